#!/usr/bin/env bash
# Tests scripts/stores.sh on a private pair of stores (own folder, ports and settings
# file): a cluster made by an older version (trust, superuser only) is upgraded to
# passwords and two roles with its data kept, starting twice is harmless, the settings
# file is private, `stop clickhouse` stops ClickHouse alone, and a running Salvage
# follows ClickHouse down and back up without a restart. Needs target/release/salvage
# (the build step of scripts/test.sh makes it).
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

# A cluster as the older script made it: trust for everyone, a table owned by the
# superuser in the salvage database.
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | head -1; }
pg_as() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi; }
mkdir -p "$dir/postgres"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/postgres"; fi
pg_as "$(pg_bin initdb)" -D "$dir/postgres/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
pg_as "$(pg_bin pg_ctl)" -D "$dir/postgres/data" -l "$dir/postgres/postgres.log" -w \
  -o "-p $SALVAGE_PG_PORT -k $dir/postgres -c listen_addresses=127.0.0.1" start >/dev/null
psql -X -q -h 127.0.0.1 -p "$SALVAGE_PG_PORT" -U postgres -d postgres -c "create database salvage"
psql -X -q -h 127.0.0.1 -p "$SALVAGE_PG_PORT" -U postgres -d salvage \
  -c "create table kept (n int)" -c "insert into kept values (1), (2), (3)"

"$stores" start >/dev/null
PGPASSWORD= psql -X -q -w -h 127.0.0.1 -p "$SALVAGE_PG_PORT" -U postgres -d postgres -c "select 1" >/dev/null 2>&1 \
  && fail "PostgreSQL still lets the superuser in without a password"
grep -Eq '^[^#]*trust' "$dir/postgres/data/pg_hba.conf" && fail "pg_hba.conf still trusts someone"
(set -a; . "$SALVAGE_ENV_FILE"; set +a
 [ "$(psql -X -tA "$SALVAGE_MIGRATE_DATABASE_URL" -c "select count(*) from kept")" = 3 ] || exit 1
 [ "$(psql -X -tA "$SALVAGE_MIGRATE_DATABASE_URL" -c "select tableowner from pg_tables where tablename = 'kept'")" = salvage_owner ] || exit 1
 [ "$(psql -X -tA "$DATABASE_URL" -c "select rolsuper or rolcreatedb from pg_roles where rolname = current_user")" = f ] || exit 1
) || fail "the upgraded cluster lost its data, kept the superuser as owner, or gave the app a superuser"
ok "an old trust cluster is upgraded to passwords and two roles, its data kept"

second=$("$stores" start)
grep -q "PostgreSQL already running" <<<"$second" || fail "a second start should find PostgreSQL running: $second"
grep -q "ClickHouse already running" <<<"$second" || fail "a second start should find ClickHouse running: $second"
ok "starting twice is harmless"
grep -Eq "^DATABASE_URL=postgres://salvage_app:[0-9a-f]{48}@127.0.0.1:$SALVAGE_PG_PORT/salvage$" "$SALVAGE_ENV_FILE" || fail "settings file lacks the application role's DATABASE_URL"
grep -Eq "^SALVAGE_MIGRATE_DATABASE_URL=postgres://salvage_owner:[0-9a-f]{48}@127.0.0.1:$SALVAGE_PG_PORT/salvage$" "$SALVAGE_ENV_FILE" || fail "settings file lacks the owner's URL"
grep -q "^CLICKHOUSE_URL=http://127.0.0.1:$SALVAGE_CH_HTTP_PORT$" "$SALVAGE_ENV_FILE" || fail "settings file lacks CLICKHOUSE_URL"
grep -Eq "^CLICKHOUSE_PASSWORD=[0-9a-f]{48}$" "$SALVAGE_ENV_FILE" || fail "settings file lacks the ClickHouse password"
[ "$(stat -c %a "$SALVAGE_ENV_FILE")" = 600 ] || fail "the settings file is readable by others"
curl -fsS "http://127.0.0.1:$SALVAGE_CH_HTTP_PORT/" --data-binary "SELECT 1" >/dev/null 2>&1 \
  && fail "ClickHouse answers without a password"
ok "the settings file names both stores, is private, and each store needs its password"

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
