#!/usr/bin/env bash
# The recovery time of a total loss, Salvage against the raw tools run by hand, in one
# run on one machine: a private pair of stores with the demo data and N ClickHouse rows
# (default 1,000,000), backed up and archived; both servers lost (data directories
# deleted, empty servers started); then `salvage recover --latest` timed end to end, the
# servers lost again, and the same work by hand timed: pgBackRest's restore into a side
# cluster, pg_dump and pg_restore into the new server, ClickHouse's tables created and
# each backup file decrypted (age), decompressed (lz4) and inserted (clickhouse-client),
# then a fresh encrypted backup of both (Salvage's last step). Prints both and the ratio.
# Usage: scripts/bench-recover.sh [ROWS]   (make bench-recover)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROWS=${1:-1000000}

NAME=bench-recover
PG_PORT=${BENCH_PG_PORT:-55469} CH_HTTP_PORT=${BENCH_CH_HTTP_PORT:-28263} CH_TCP_PORT=${BENCH_CH_TCP_PORT:-29163}
SALVAGE_PORT=${BENCH_SALVAGE_PORT:-3137}
. scripts/private-stores.sh

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

with_settings "$BIN" migrate >/dev/null
with_settings "$BIN" demo >/dev/null
ch "INSERT INTO salvage.requests (id, ts, ts_ms, organization_id, project, provider, model, status,
      latency_ms, prompt_tokens, completion_tokens, cost_usd, error)
    SELECT generateUUIDv4(), toDateTime('2026-09-01 00:00:00', 'UTC') + number * 7,
      number % 1000, concat('org_', toString(number % 40)), 'chat', 'openai', 'gpt-4o',
      200, number % 900, number % 4000, number % 800, number / 100000.0,
      if(number % 50 = 0, 'timeout', NULL)
    FROM numbers($ROWS)"
for table in requests events history_anchors; do
  ch "SHOW CREATE TABLE salvage.$table FORMAT TSVRaw" >"$dir/$table.sql"
done
with_settings "$BIN" backup create --reason "bench: the backups a recovery starts from" >/dev/null
wait_archived
backup=$(ls -d "$dir/backups/clickhouse/"* | sort -V | tail -1)
rows_before=$(ch 'SELECT count() FROM salvage.requests')
ok "$rows_before requests in ClickHouse and the demo in PostgreSQL, backed up and archived"

# Salvage.
lose_both_servers
started=$(now)
with_settings "$BIN" recover --latest --lost-at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --reason "bench: total loss" >"$dir/salvage.log" 2>&1 || { cat "$dir/salvage.log"; fail "salvage recover failed"; }
salvage_secs=$(secs "$started" "$(now)")
[ "$(ch 'SELECT count() FROM salvage.requests')" = "$rows_before" ] || fail "Salvage's recovery lost requests"

# By hand, the same work.
lose_both_servers
conf=$(with_settings sh -c 'echo "$SALVAGE_PGBACKREST_CONFIG"')
stanza=$(with_settings sh -c 'echo "${SALVAGE_PGBACKREST_STANZA:-salvage}"')
side=$(dirname "$conf")/side/by-hand
side_port=$((PG_PORT + 1))
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)
owner_url=$(with_settings sh -c 'echo "$SALVAGE_MIGRATE_DATABASE_URL"')
side_url=${owner_url/:$PG_PORT\//:$side_port/}
identity=$dir/age.key
(umask 077; with_settings sh -c 'printf "%s\n" "$SALVAGE_BACKUP_AGE_IDENTITY"' >"$identity")
recipient=$(age-keygen -y "$identity")
ch_client() {
  with_settings sh -c 'clickhouse-client --host 127.0.0.1 --port "$SALVAGE_CH_TCP_PORT" --password "$CLICKHOUSE_PASSWORD" "$@"' ch "$@"
}

started=$(now)
as_postgres pgbackrest --config="$conf" --stanza="$stanza" --pg1-path="$side" restore \
  --archive-mode=off --type=default >/dev/null
as_postgres "$pg_ctl" -D "$side" -l "$side/side.log" -w -t 600 \
  -o "-p $side_port -k $side -c listen_addresses=127.0.0.1 -c archive_mode=off -c max_connections=300" start >/dev/null
promoted() { [ "$(psql -X -tA "$side_url" -c 'select not pg_is_in_recovery()' 2>/dev/null)" = t ]; }
within 600 promoted || fail "the side cluster never finished its recovery"
pg_dump -Fc --exclude-table-data=public.sessions --exclude-table-data=public.sign_in_failures \
  -f "$dir/hand.dump" "$side_url"
pg_restore --no-owner --no-privileges --single-transaction --schema=public -d "$owner_url" "$dir/hand.dump"
as_postgres "$pg_ctl" -D "$side" -m fast -w stop >/dev/null
rm -rf "$side"
pg_secs=$(secs "$started" "$(now)")
ch_started=$(now)
ch_client --query "CREATE DATABASE IF NOT EXISTS salvage"
for table in requests events history_anchors; do
  ch_client --multiquery <"$dir/$table.sql"
  # The files its manifest lists with rows (a table found empty has a file of none).
  for file in $(python3 -c 'import json, sys
for f in json.load(open(sys.argv[1]))["files"]:
    if f["table"] == sys.argv[2] and f["rows"] > 0: print(f["path"])' "$backup/manifest.json" "$table"); do
    age -d -i "$identity" "$backup/$file" | lz4 -dc | ch_client --query "INSERT INTO salvage.$table FORMAT Native"
  done
done
ch_secs=$(secs "$ch_started" "$(now)")
backup_started=$(now)
pg_dump -Fc -d "$owner_url" | age -r "$recipient" >"$dir/hand-fresh.dump"
for table in requests events history_anchors; do
  ch_client --query "SELECT * FROM salvage.$table FORMAT Native" | lz4 -c | age -r "$recipient" >"$dir/hand-fresh-$table"
done
backup_secs=$(secs "$backup_started" "$(now)")
hand_secs=$(secs "$started" "$(now)")
[ "$(ch 'SELECT count() FROM salvage.requests')" = "$rows_before" ] || fail "the recovery by hand lost requests"

echo
echo "Recovery from total loss, $rows_before ClickHouse rows and the demo PostgreSQL ($(nproc) cores):"
grep -E '^[0-9]/7 .*\(' "$dir/salvage.log" | sed 's/^/  salvage  /'
printf '  by hand  PostgreSQL %s s, ClickHouse %s s, fresh backup %s s\n' "$pg_secs" "$ch_secs" "$backup_secs"
printf '  salvage recover: %s s\n  by hand:         %s s\n  ratio:           %sx (goal <= 1.3x)\n' \
  "$salvage_secs" "$hand_secs" "$(awk -v a="$salvage_secs" -v b="$hand_secs" 'BEGIN { printf "%.2f", a / b }')"
