.PHONY: test run build bench
# Every test, with PostgreSQL and Redis started if they are not running.
test:
	./scripts/test.sh

# The server on the embedded SQLite default (./holdfast.db).
run:
	go run ./cmd/holdfast serve

build:
	go build -o holdfast ./cmd/holdfast

bench:
	eval "$$(./scripts/services.sh)" && go test -run '^$$' -bench . -benchtime 3s ./sqlite ./postgres
