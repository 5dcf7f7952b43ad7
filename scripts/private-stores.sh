# Sourced (not run) by scripts/test-recover.sh and scripts/bench-recover.sh: a private
# pair of stores in a folder of its own, on ports of its own, with its settings file,
# and the helpers both use. Set NAME (the folder's prefix and the messages' tag) and the
# PG_PORT, CH_HTTP_PORT, CH_TCP_PORT and SALVAGE_PORT defaults before sourcing.
BIN=${SALVAGE_BIN:-$ROOT/target/release/salvage}
dir=$(mktemp -d "/tmp/salvage-$NAME.XXXXXX")
chmod 755 "$dir"
export SALVAGE_STORES_DIR=$dir SALVAGE_ENV_FILE=$dir/env
export SALVAGE_PG_PORT=$PG_PORT SALVAGE_CH_HTTP_PORT=$CH_HTTP_PORT SALVAGE_CH_TCP_PORT=$CH_TCP_PORT
export SALVAGE_ARCHIVE_TIMEOUT_SECS=10 RUST_LOG=${RUST_LOG:-warn}
PORT=$SALVAGE_PORT
stores=scripts/stores.sh
server= traffic= recovering=

fail() { printf '%s: FAIL: %s\n' "$NAME" "$*" >&2; exit 1; }
ok() { printf '%s: ok: %s\n' "$NAME" "$*"; }
cleanup() {
  for pid in $server $traffic $recovering; do pkill -KILL -P "$pid" 2>/dev/null; kill "$pid" 2>/dev/null || true; done
  "$stores" stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

# The settings as the operator keeps them off the machine: the stores, the repository,
# the keys (a copy of the settings file the first start writes).
with_settings() {
  (set -a; . "$dir/settings"; set +a
   export SALVAGE_ADDR=127.0.0.1:$PORT SALVAGE_PUBLIC_URL=http://127.0.0.1:$PORT
   exec "$@")
}
sql() { with_settings sh -c 'psql -X -q -tA -v ON_ERROR_STOP=1 "$SALVAGE_MIGRATE_DATABASE_URL" -c "$1"' sql "$1"; }
ch() {
  with_settings sh -c 'curl -fsS "$CLICKHOUSE_URL/?user=$CLICKHOUSE_USER&password=$CLICKHOUSE_PASSWORD" --data-binary "$1"' ch "$1"
}
# Waits up to $1 seconds for the command after it to succeed.
within() {
  local seconds=$1 i; shift
  for i in $(seq 1 $((seconds * 5))); do "$@" && return 0; sleep 0.2; done
  return 1
}
start_server() {
  with_settings "$BIN" serve >"$dir/serve.log" 2>&1 &
  server=$!
  within 60 curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health/ready" || { cat "$dir/serve.log"; fail "Salvage never served"; }
}
# A backgrounded with_settings is a subshell whose child is the program: stop both.
stop_pid() {
  pkill -TERM -P "$1" 2>/dev/null || true
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# Waits until the WAL segment being written now is archived.
archived() { [ "$(sql "select coalesce(last_archived_wal, '') >= '$1' from pg_stat_archiver")" = t ]; }
wait_archived() {
  local segment
  segment=$(sql "select pg_walfile_name(pg_current_wal_lsn())")
  within 300 archived "$segment" || fail "WAL segment $segment was never archived"
}
# The loss: both servers stopped, their data directories deleted, empty servers started
# (without archiving: the old repository is kept as it was for the recovery to read).
lose_both_servers() {
  "$stores" stop >/dev/null
  rm -rf "$dir/postgres/data" "$dir/clickhouse/data"
  SALVAGE_PG_ARCHIVE=off SALVAGE_ENV_FILE=$dir/env.empty "$stores" start >/dev/null
  [ "$(sql "select count(*) from pg_tables where schemaname = 'public'")" = 0 ] || fail "the new PostgreSQL is not empty"
}

"$stores" start >/dev/null
cp "$SALVAGE_ENV_FILE" "$dir/settings"
