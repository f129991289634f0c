.PHONY: test run build bench chaos soak screenshots
# Every test, with PostgreSQL and Redis started if they are not running.
test:
	./scripts/test.sh

# The server on the embedded SQLite default (./holdfast.db).
run:
	go run ./cmd/holdfast serve

build:
	go build -o holdfast ./cmd/holdfast

# Storage benchmarks, then the flash-sale benchmark (pgbench's ceiling
# against holdfast over HTTP and as a library) on the PostgreSQL that
# scripts/services.sh provides.
bench:
	eval "$$(./scripts/services.sh)" && go test -run '^$$' -bench . -benchtime 3s ./sqlite ./postgres && \
	  go run ./cmd/holdfast lab --bench --db "$$HOLDFAST_TEST_POSTGRES"

# Three real servers, their own PostgreSQL and Redis, faults (kill -9,
# SIGSTOP, pg_ctl stop -m immediate, Redis kill/flush, Toxiproxy, clock
# skew), every history checked for linearizability. CHAOS_DURATION=5m for
# a soak; CHAOS_ONLY=kill-9,network for some scenarios.
chaos:
	./scripts/chaos.sh

# The chaos scenarios with long storms (a minute each unless
# CHAOS_DURATION says; `make test` runs 12 s ones): for rare interleavings,
# outside the test run's budget.
soak:
	CHAOS_DURATION=$${CHAOS_DURATION:-1m} ./scripts/chaos.sh

# The page's screenshots in docs/screenshots, taken by the browser tests
# (desktop, phone, dark, the seat map mid-sale, the venue map mid-sale,
# the race, the queue and waitlist, the operator view).
screenshots:
	eval "$$(./scripts/services.sh)" && HOLDFAST_ARTIFACTS="$$(pwd)/docs" go test -count=1 -run 'TestWebPage' ./cmd/holdfast
