#!/usr/bin/env bash
# Tests scripts/stores.sh on a private pair of stores (own folder, ports and settings
# file): starting twice is harmless, `stop clickhouse` stops ClickHouse alone, and a
# running Salvage follows ClickHouse down and back up without a restart. Needs
# target/release/salvage (the build step of scripts/test.sh makes it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

dir=$(mktemp -d /tmp/salvage-stores-test.XXXXXX)
chmod 755 "$dir"
export SALVAGE_STORES_DIR=$dir SALVAGE_ENV_FILE=$dir/env
export SALVAGE_PG_PORT=${TEST_PG_PORT:-55439} SALVAGE_CH_HTTP_PORT=${TEST_CH_HTTP_PORT:-28233} SALVAGE_CH_TCP_PORT=${TEST_CH_TCP_PORT:-29133}
PORT=${TEST_SALVAGE_PORT:-3117}
stores=scripts/stores.sh
server=

fail() { printf 'test-stores: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'test-stores: ok: %s\n' "$*"; }
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  "$stores" stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

ready_status() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health/ready" || true; }
wait_for_status() {
  local want=$1 i
  for i in $(seq 1 50); do [ "$(ready_status)" = "$want" ] && return 0; sleep 0.2; done
  return 1
}

"$stores" start >/dev/null
second=$("$stores" start)
grep -q "PostgreSQL already running" <<<"$second" || fail "a second start should find PostgreSQL running: $second"
grep -q "ClickHouse already running" <<<"$second" || fail "a second start should find ClickHouse running: $second"
ok "starting twice is harmless"
grep -q "^DATABASE_URL=postgres://postgres@127.0.0.1:$SALVAGE_PG_PORT/salvage$" "$SALVAGE_ENV_FILE" || fail "settings file lacks DATABASE_URL"
grep -q "^CLICKHOUSE_URL=http://127.0.0.1:$SALVAGE_CH_HTTP_PORT$" "$SALVAGE_ENV_FILE" || fail "settings file lacks CLICKHOUSE_URL"
ok "the settings file names both stores"

(set -a; . "$SALVAGE_ENV_FILE"; set +a
 SALVAGE_ADDR=127.0.0.1:$PORT SALVAGE_PUBLIC_URL=http://127.0.0.1:$PORT exec target/release/salvage serve) \
  >"$dir/salvage.log" 2>&1 &
server=$!
wait_for_status 200 || { cat "$dir/salvage.log"; fail "Salvage never became ready"; }
ok "Salvage is ready on the private stores"

"$stores" stop clickhouse >/dev/null
status=$("$stores" status)
grep -q "clickhouse: stopped" <<<"$status" || fail "ClickHouse still runs after stop clickhouse"
grep -q "postgres: running" <<<"$status" || fail "stop clickhouse stopped PostgreSQL too"
ok "stop clickhouse stops ClickHouse alone"
wait_for_status 503 || fail "/health/ready did not turn 503 within 10 s of ClickHouse stopping"
body=$(curl -s "http://127.0.0.1:$PORT/health/ready")
grep -q '"failing":\["clickhouse"\]' <<<"$body" || fail "503 does not name ClickHouse: $body"
ok "/health/ready is 503 naming ClickHouse"

"$stores" start clickhouse >/dev/null
wait_for_status 200 || fail "/health/ready did not return to 200 after ClickHouse restarted"
ok "Salvage recovered without a restart"

"$stores" stop >/dev/null
status=$("$stores" status)
grep -q "postgres: stopped" <<<"$status" || fail "PostgreSQL still runs after stop"
grep -q "clickhouse: stopped" <<<"$status" || fail "ClickHouse still runs after stop"
ok "stop ends both"
