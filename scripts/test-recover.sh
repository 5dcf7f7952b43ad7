#!/usr/bin/env bash
# Recovery from total loss, the way it happens: a private pair of stores (own folder,
# ports and settings) with demo data, accounts, ClickHouse rows and their backup, rows
# queued in PostgreSQL while ClickHouse is down, and application rows written in two
# batches minutes before the end. Then both servers are stopped and their data
# directories deleted; empty servers start; `salvage recover --latest`, killed in its
# ClickHouse step and run again, brings everything back. Every row is counted against
# what was there. Then `--to` a moment between the two batches, onto the recovered
# database (named with --confirm): the first batch is back, the second is not.
# Needs target/release/salvage (SALVAGE_BIN to use another build).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

NAME=test-recover
PG_PORT=${TEST_PG_PORT:-55459} CH_HTTP_PORT=${TEST_CH_HTTP_PORT:-28253} CH_TCP_PORT=${TEST_CH_TCP_PORT:-29153}
SALVAGE_PORT=${TEST_SALVAGE_PORT:-3127}
. scripts/private-stores.sh

with_settings "$BIN" migrate >/dev/null
with_settings "$BIN" demo >/dev/null
printf 'recover-pass-123456\n' | with_settings "$BIN" user add --email recover@example.com --role admin \
  --reason "test: an account to sign in with after the loss" >/dev/null

# Rows in ClickHouse, then the backups the recovery starts from.
start_server
with_settings "$BIN" demo traffic --rate 20 >"$dir/traffic.log" 2>&1 &
traffic=$!
in_clickhouse() { [ "$(ch 'SELECT count() FROM salvage.requests' 2>/dev/null || echo 0)" -ge "$1" ]; }
within 120 in_clickhouse 200 || fail "no traffic reached ClickHouse"
stop_pid "$traffic"; traffic=
with_settings "$BIN" backup create --reason "test: the backups a recovery starts from" >/dev/null
backed_requests=$(ch 'SELECT count() FROM salvage.requests')
backed_events=$(ch 'SELECT count() FROM salvage.events')

# ClickHouse down: the rows queue in PostgreSQL. Salvage stops before it can replay them.
"$stores" stop clickhouse >/dev/null
with_settings "$BIN" demo traffic --rate 20 >"$dir/traffic.log" 2>&1 &
traffic=$!
queued() { [ "$(sql 'select count(*) from requests_fallback')" -ge "$1" ]; }
within 120 queued 100 || fail "no row was queued"
stop_pid "$traffic"; traffic=
stop_pid "$server"; server=
queued_requests=$(sql 'select count(*) from requests_fallback')
queued_events=$(sql 'select count(*) from events_fallback')
ok "$backed_requests requests in ClickHouse's backup, $queued_requests queued in PostgreSQL"

# The guarded service's own rows, in two batches; a moment between them.
sql "create table orders (id bigserial primary key, batch int not null)"
sql "insert into orders (batch) select 1 from generate_series(1, 2000)"
sleep 2
between=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 2
sql "insert into orders (batch) select 2 from generate_series(1, 1000)"
# Committed more than an archive timeout before the loss: archived (waited for, not assumed).
wait_archived
sql "select email || ' ' || password_hash from users order by email" >"$dir/accounts.before"
sql "select string_agg(format('%s %s', table_name, (xpath('/row/c/text()', query_to_xml(format('select count(*) as c from %I', table_name), false, true, '')))[1]::text), E'\n' order by table_name) from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE'" >"$dir/counts.before"

lose_both_servers
ok "both servers lost and started again empty"

with_settings "$BIN" recover --list >"$dir/list.txt" || { cat "$dir/list.txt"; fail "recover --list failed on empty servers"; }
grep -q '^postgres .*point-in-time' "$dir/list.txt" || fail "no point-in-time window listed: $(cat "$dir/list.txt")"
grep -q '^clickhouse .*backup' "$dir/list.txt" || fail "no ClickHouse backup listed: $(cat "$dir/list.txt")"
ok "recover --list on empty servers lists the window and the backups"

# Recover, killed in its ClickHouse step, then run again. During the first run a
# session named as a console's is open on the database, so the ClickHouse step waits
# out ingest's timeout (5 s) before it swaps anything: the kill lands in that step.
lost_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
recover() { with_settings "$BIN" recover "$@" --reason "test: total loss of both stores"; }
with_settings sh -c 'PGAPPNAME=salvage exec psql -X -q "$DATABASE_URL" -c "select pg_sleep(600)"' >/dev/null 2>&1 &
traffic=$! # (stopped with the others on exit)
recover --latest --lost-at "$lost_at" >"$dir/first.log" 2>&1 &
recovering=$!
within 900 grep -q '^4/7 .*…' "$dir/first.log" || { cat "$dir/first.log"; fail "the recovery never reached its step 4"; }
pkill -KILL -P "$recovering"; wait "$recovering" 2>/dev/null || true; recovering=
grep -q '^4/7 .*(' "$dir/first.log" && fail "step 4 ended before the kill: $(cat "$dir/first.log")"
stop_pid "$traffic"; traffic=
# Its server process sleeps on after the client goes: ended as its own role may.
with_settings sh -c 'psql -X -q -tA "$DATABASE_URL" -c "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = \$\$salvage\$\$"' >/dev/null
recover --latest --lost-at "$lost_at" >"$dir/second.log" 2>&1 || { cat "$dir/first.log" "$dir/second.log"; fail "the resumed recovery failed"; }
for n in 1 2 3; do
  grep -q "^$n/7 .*: done earlier" "$dir/second.log" || { cat "$dir/second.log"; fail "step $n ran again"; }
done
grep -q '^Resuming the recovery' "$dir/second.log" || fail "the second run did not say it resumes"
grep -q '^4/7 ClickHouse from its backup …' "$dir/second.log" || fail "step 4 did not run again: $(cat "$dir/second.log")"
ok "killed in step 4 and run again: steps 1 to 3 were not repeated"
cat "$dir/second.log"

# Every row.
[ "$(sql 'select count(*) from orders')" = 3000 ] || fail "orders: $(sql 'select count(*) from orders') rows, 3000 were committed"
sql "select email || ' ' || password_hash from users order by email" | diff -q - "$dir/accounts.before" >/dev/null \
  || fail "the accounts differ from before the loss"
# Every table as the recovery counted it right after its first step, against the count
# taken on the lost server (sessions and the sign-in throttle never come back).
awk '$1 == "postgres" && NF == 4 { gsub(",", "", $3); print $2, $3 }' "$dir/second.log" >"$dir/counts.recovered"
[ "$(wc -l <"$dir/counts.recovered")" -ge 30 ] || fail "the report lists too few tables: $(cat "$dir/counts.recovered")"
while read -r table before; do
  recovered=$(awk -v t="$table" '$1 == t { print $2 }' "$dir/counts.recovered")
  case "$table" in sessions|sign_in_failures) want=0 ;; *) want=$before ;; esac
  [ "$recovered" = "$want" ] || fail "$table: $recovered rows came back, $want were there before the loss"
done <"$dir/counts.before"
for queue in requests_fallback events_fallback; do
  [ "$(sql "select count(*) from $queue")" = 0 ] || fail "$queue still holds rows after the replay"
done
[ "$(ch 'SELECT count() FROM salvage.requests')" = $((backed_requests + queued_requests)) ] \
  || fail "ClickHouse requests: $(ch 'SELECT count() FROM salvage.requests'), want $backed_requests + $queued_requests"
[ "$(ch 'SELECT count() FROM salvage.events')" = $((backed_events + queued_events)) ] \
  || fail "ClickHouse events: $(ch 'SELECT count() FROM salvage.events'), want $backed_events + $queued_events"
[ "$(ch 'SELECT count() - uniqExact(organization_id, id) FROM salvage.requests')" = 0 ] || fail "a request is in ClickHouse twice"
with_settings "$BIN" history verify >/dev/null || fail "the history chain does not verify after the recovery"
grep -q "^postgres .*orders .* 3,000 .* 3,000" "$dir/second.log" || fail "the report does not count orders"
ok "every row is back: 3,000 orders, every account, ClickHouse's backup plus the queued rows once, the history chain"

start_server
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept: text/html' \
  --data-urlencode email=recover@example.com --data-urlencode password=recover-pass-123456 \
  "http://127.0.0.1:$PORT/api/auth/sign-in")
[ "$status" = 303 ] || fail "signing in after the recovery answered $status"
stop_pid "$server"; server=
ok "an account signs in with its password"

# To a moment between the batches, onto the recovered database: refused without --confirm.
set +e
recover --to "$between" >"$dir/refused.log" 2>&1
code=$?
set -e
[ "$code" = 2 ] || { cat "$dir/refused.log"; fail "recovering onto a database with tables exited $code, not 2"; }
grep -q 'holds .* tables' "$dir/refused.log" || fail "the refusal does not say why: $(cat "$dir/refused.log")"
recover --to "$between" --confirm salvage >"$dir/pitr.log" 2>&1 || { cat "$dir/pitr.log"; fail "the recovery to $between failed"; }
[ "$(sql 'select count(*) from orders where batch = 1')" = 2000 ] || fail "the first batch is not all back"
[ "$(sql 'select count(*) from orders where batch = 2')" = 0 ] || fail "the second batch, committed after $between, came back"
ok "to $between: the first batch is back and the second is not"
