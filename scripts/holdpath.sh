#!/usr/bin/env bash
# Lists every function, file by file, that one plain hold runs on a store
# that batches (SQLite): a coverage build of internal/holdpath, its
# counters cleared just before the hold. docs/design.md's "A hold's way
# through the code" is read off it; TestHoldPath checks it in make test.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -v -run '^TestHoldPath$' ./internal/holdpath | sed -n 's/^ *main_test.go:[0-9]*: //p' | sort
