#!/usr/bin/env bash
# The chaos harness: three real holdfast servers, a PostgreSQL and a Redis of
# its own, faults, and a linearizability check. `make chaos` runs it;
# `make test` runs it too, after the other tests. CHAOS_DURATION=5m for a soak
# (each scenario's storm; the default is 12s; `make soak`: 1m), CHAOS_ONLY=kill-9,network for
# some scenarios. Results: .artifacts/chaos/report.txt (and, on failure, each
# failing history as porcupine's HTML and as JSON lines).
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs what is missing (the harness needs PostgreSQL's and Redis's
# server programs); the services it starts are its own.
eval "$(scripts/services.sh)" >/dev/null
exec go test -count=1 -timeout 60m ./internal/chaos -chaos -chaos.only "${CHAOS_ONLY:-}" -v
