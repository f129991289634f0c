#!/usr/bin/env bash
# Makes sure the services the tests need are running, and prints the
# environment that points the tests at them (eval it, or let scripts/test.sh).
#
#   PostgreSQL: a throwaway cluster of the tests' own on 127.0.0.1:55432
#               (initdb/pg_ctl as the postgres user, since PostgreSQL refuses
#               root), installing Debian's postgresql package first when it
#               is missing. Its own, so that its settings fit the suite
#               (max_connections 300: the races open many connections, and
#               test packages run side by side; max_prepared_transactions 300:
#               holdfast lab --bench --shards) and no other use of a shared
#               server can starve it. HOLDFAST_TEST_POSTGRES points the tests
#               elsewhere.
#   Redis:      the one on 127.0.0.1:6379 if it answers; otherwise a
#               throwaway redis-server on 127.0.0.1:56379, installing Debian's
#               redis-server package first when it is missing.
#   Tools:      Chromium (browser tests), Patroni and etcd (the chaos
#               scenario patroni) from Debian; @redocly/cli (the
#               OpenAPI lint) and axe-core (the page's accessibility check)
#               from the npm registry, pinned; promtool (the alert rules'
#               unit tests), taken out of Debian's prometheus package
#               without installing it (no Prometheus service is started).
#
# Idempotent: run it as often as you like; a throwaway service already
# running is reused. HOLDFAST_THROWAWAY=1 also skips the loopback Redis.
set -euo pipefail

log() { echo "services: $*" >&2; }
state="${TMPDIR:-/tmp}/holdfast-test-services"
mkdir -p "$state"

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need $* but not root: install it, or point HOLDFAST_TEST_POSTGRES/HOLDFAST_TEST_REDIS at running services"
    exit 1
  fi
  if [ ! -f "$state/apt-updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$state/apt.log" 2>&1 && touch "$state/apt-updated"
  fi
  # apt's own output goes to a log: it buries the test output otherwise.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$state/apt.log" 2>&1; then
    tail -20 "$state/apt.log" >&2
    log "installing $* failed (full log: $state/apt.log)"
    exit 1
  fi
}

pg_answers() { # url
  if command -v psql >/dev/null 2>&1; then
    psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
  else
    return 1
  fi
}

postgres_url() {
  if [ -n "${HOLDFAST_TEST_POSTGRES:-}" ]; then
    echo "$HOLDFAST_TEST_POSTGRES"; return
  fi
  local port=55432 url="postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable"
  if pg_answers "$url"; then
    echo "$url"; return
  fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    log "installing PostgreSQL"
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  local data="$state/pg"
  local as=()
  if [ "$(id -u)" = 0 ]; then
    as=(runuser -u postgres --)
    chown postgres "$state"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a throwaway PostgreSQL cluster in $data"
    rm -rf "$data"
    "${as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  log "starting the throwaway PostgreSQL on port $port"
  "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=300 -c max_prepared_transactions=300" start >&2 || {
    cat "$data/log" >&2; exit 1; }
  echo "$url"
}

redis_answers() { # port
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
  else
    return 1
  fi
}

redis_url() {
  if [ -n "${HOLDFAST_TEST_REDIS:-}" ]; then
    echo "$HOLDFAST_TEST_REDIS"; return
  fi
  if [ "${HOLDFAST_THROWAWAY:-}" != 1 ] && redis_answers 6379; then
    echo "redis://127.0.0.1:6379/0"; return
  fi
  local port=56379
  if ! redis_answers $port; then
    if ! command -v redis-server >/dev/null 2>&1; then
      log "installing Redis"
      apt_install redis-server redis-tools
    fi
    log "starting a throwaway Redis on port $port"
    mkdir -p "$state/redis"
    redis-server --port $port --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
      --dir "$state/redis" --logfile "$state/redis/log" >&2
    for _ in $(seq 50); do redis_answers $port && break; sleep 0.1; done
    redis_answers $port || { log "redis did not start"; cat "$state/redis/log" >&2; exit 1; }
  fi
  echo "redis://127.0.0.1:$port/0"
}

# psql and redis-cli are how this script sees a server; install the clients
# when they are missing (a fresh Debian machine has neither).
command -v psql >/dev/null 2>&1 || { log "installing the PostgreSQL client"; apt_install postgresql-client; }
command -v redis-cli >/dev/null 2>&1 || { log "installing the Redis client"; apt_install redis-tools; }

# The chaos harness (scripts/chaos.sh) starts, crashes and restarts a
# PostgreSQL and a Redis of its own: it needs their server programs even
# where the test services already run.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  log "installing PostgreSQL's server programs for the chaos harness"
  apt_install postgresql
fi
command -v redis-server >/dev/null 2>&1 || { log "installing redis-server for the chaos harness"; apt_install redis-server; }
# The chaos scenario patroni runs a real failover manager: Patroni over a
# one-member etcd, both started by the harness on ports of its own (the
# packages' own services are not used; without systemd they do not start).
if ! command -v patroni >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1; then
  log "installing patroni and etcd-server for the chaos harness"
  apt_install --no-install-recommends patroni etcd-server
fi

# The web page's tests drive Debian's Chromium headless.
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium for the browser tests"
  apt_install chromium
fi

# npm_tool NAME PACKAGE VERSION FILE: installs PACKAGE@VERSION from the
# npm registry, pinned, once, into the state directory's tools/NAME-VERSION
# unless FILE (under its node_modules) is there, and prints FILE's path.
npm_tool() {
  local dir="$state/tools/$1-$3"
  if [ ! -e "$dir/node_modules/$4" ]; then
    command -v npm >/dev/null 2>&1 || { log "installing Node.js and npm for $2"; apt_install nodejs npm; }
    log "installing $2@$3"
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund --no-save "$2@$3" >>"$state/npm.log" 2>&1) || {
      tail -20 "$state/npm.log" >&2; log "installing $2 failed (full log: $state/npm.log)"; exit 1; }
  fi
  echo "$dir/node_modules/$4"
}

# The OpenAPI document is linted with Redocly's CLI; the page's
# accessibility check runs axe-core in the browser tests.
redocly=$(npm_tool redocly @redocly/cli 2.77.0 .bin/redocly)
axe=$(npm_tool axe-core axe-core 4.14.1 axe-core/axe.min.js)

# promtool tests deploy/prometheus's alert rules. Only the one program is
# needed: it is unpacked from Debian's prometheus package, which is never
# installed (its post-install would start a Prometheus server).
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool="$state/tools/prometheus/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    log "unpacking promtool from Debian's prometheus package"
    [ -f "$state/apt-updated" ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$state/apt.log" 2>&1 && touch "$state/apt-updated"; }
    rm -rf "$state/tools/prometheus-deb" && mkdir -p "$state/tools/prometheus-deb"
    (cd "$state/tools/prometheus-deb" && apt-get download prometheus >>"$state/apt.log" 2>&1 &&
      dpkg-deb -x prometheus_*.deb "$state/tools/prometheus") || {
      tail -20 "$state/apt.log" >&2; log "unpacking promtool failed (full log: $state/apt.log)"; exit 1; }
  fi
fi

echo "export HOLDFAST_PROMTOOL='$promtool'"
echo "export HOLDFAST_REDOCLY='$redocly'"
echo "export HOLDFAST_AXE='$axe'"
echo "export HOLDFAST_TEST_POSTGRES='$(postgres_url)'"
echo "export HOLDFAST_TEST_REDIS='$(redis_url)'"
