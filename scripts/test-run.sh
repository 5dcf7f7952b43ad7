#!/usr/bin/env bash
# The first of the two commands, tried as a user would: `make run` on a private pair of
# stores (own folder, ports and settings file, so the developer's own stores and .env
# stay untouched) must serve the console with its demo data. Uses the release build the
# build step made (make run rebuilds only when a source changed). Starts it, waits for
# /admin/login, checks that page (plain HTML, no client), the client on /admin/setup, the
# demo accounts and history and the demo traffic reaching ClickHouse, then stops it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

dir=$(mktemp -d /tmp/salvage-run-test.XXXXXX)
chmod 755 "$dir"
export SALVAGE_STORES_DIR=$dir/stores SALVAGE_ENV_FILE=$dir/env
export SALVAGE_PG_PORT=${TEST_PG_PORT:-55449} SALVAGE_CH_HTTP_PORT=${TEST_CH_HTTP_PORT:-28243} SALVAGE_CH_TCP_PORT=${TEST_CH_TCP_PORT:-29143}
PORT=${TEST_SALVAGE_PORT:-3127}
export SALVAGE_ADDR=127.0.0.1:$PORT
BASE=http://$SALVAGE_ADDR
LOG=$dir/make-run.log
run=

fail() { printf 'test-run: FAIL: %s\n' "$*" >&2; printf -- '--- make run printed:\n' >&2; tail -n 40 "$LOG" >&2 || true; exit 1; }
ok() { printf 'test-run: ok: %s\n' "$*"; }
cleanup() {
  if [ -n "$run" ]; then
    kill -TERM -- "-$run" 2>/dev/null || true
    wait "$run" 2>/dev/null || true
  fi
  scripts/stores.sh stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

started=$(date +%s)
# Its own process group, so stopping it stops `salvage serve` and the demo traffic.
setsid make --no-print-directory run >"$LOG" 2>&1 </dev/null &
run=$!
for _ in $(seq 1 600); do
  curl -fsS -o /dev/null "$BASE/admin/login" 2>/dev/null && break
  kill -0 "$run" 2>/dev/null || fail "make run exited before serving /admin/login"
  sleep 0.5
done
page=$(curl -fsS "$BASE/admin/login") || fail "make run never served /admin/login"
ok "make run served /admin/login after $(( $(date +%s) - started )) s"

grep -q '<form method="post"' <<<"$page" || fail "/admin/login has no sign-in form"
if grep -qE '/pkg/salvage\.(wasm|js)' <<<"$page"; then fail "/admin/login loads the client; it is meant to be plain HTML"; fi
ok "/admin/login is the plain sign-in form, with no client"
# The client, on a page that loads it without a session: the first-admin page.
page=$(curl -fsS "$BASE/admin/setup") || fail "make run did not serve /admin/setup"
grep -q '/pkg/salvage.wasm' <<<"$page" || fail "/admin/setup does not load the client (/pkg/salvage.wasm)"
wasm_type=$(curl -fsS -o "$dir/client.wasm" -w '%{content_type}' "$BASE/pkg/salvage.wasm") || fail "/pkg/salvage.wasm is not served"
[ "$wasm_type" = application/wasm ] || fail "/pkg/salvage.wasm is served as '$wasm_type'"
cmp -s "$dir/client.wasm" target/site/pkg/salvage.wasm || fail "the served client is not the one the build made"
ok "the page loads the release client the build made"
curl -fsS -H 'Accept-Encoding: gzip' -D "$dir/gz.headers" "$BASE/pkg/salvage.wasm" | gunzip >"$dir/client.gunzipped" \
  || fail "/pkg/salvage.wasm is not served gzip-encoded to a browser that asks"
grep -qi '^content-encoding: gzip' "$dir/gz.headers" || fail "/pkg/salvage.wasm came without Content-Encoding: gzip"
cmp -s "$dir/client.gunzipped" target/site/pkg/salvage.wasm || fail "the gzip copy of the client is not the client"
ok "the client is served precompressed ($(stat -c %s target/site/pkg/salvage.wasm.gz) bytes gzip)"
# The live refresh of the pages served without the client (the alerts page).
live_type=$(curl -fsS -o "$dir/live.wasm" -w '%{content_type}' "$BASE/live/live_bg.wasm") || fail "/live/live_bg.wasm is not served"
[ "$live_type" = application/wasm ] || fail "/live/live_bg.wasm is served as '$live_type'"
cmp -s "$dir/live.wasm" target/site/live/live_bg.wasm || fail "the served live refresh is not the one the build made"
curl -fsS -o /dev/null "$BASE/live/live.js" || fail "/live/live.js is not served"
ok "the live refresh is served ($(stat -c %s target/site/live/live_bg.wasm) bytes of WASM)"
# That page's own chunk (the client is split per page): named in the manifest the split
# wrote, served as WebAssembly, byte for byte.
setup_chunk=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(next(c[-1] for k,c in m.items() if k.startswith("__setup_route_view")))' \
  target/site/pkg/__wasm_split_manifest.json) || fail "the split manifest names no chunk for the first-admin page"
chunk_type=$(curl -fsS -o "$dir/chunk.wasm" -w '%{content_type}' "$BASE/pkg/$setup_chunk.wasm") || fail "/pkg/$setup_chunk.wasm is not served"
[ "$chunk_type" = application/wasm ] || fail "/pkg/$setup_chunk.wasm is served as '$chunk_type'"
cmp -s "$dir/chunk.wasm" "target/site/pkg/$setup_chunk.wasm" || fail "the served first-admin chunk is not the one the build made"
ok "the first-admin page's own WASM chunk is served ($setup_chunk.wasm)"

set -a; . "$SALVAGE_ENV_FILE"; set +a
accounts=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from users where email like '%@salvage.demo'")
[ "$accounts" = 3 ] || fail "expected the 3 demo accounts, found $accounts"
entries=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from runbook_history")
[ "$entries" -ge 40 ] || fail "expected four months of demo history, found $entries entries"
runs=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from cron_job_runs")
[ "$runs" -ge 200 ] || fail "expected a day of demo cron runs, found $runs"
alerts=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from internal_alerts where status = 'resolved' and resolution_note is not null")
[ "$alerts" -ge 5 ] || fail "expected weeks of resolved demo alerts with notes, found $alerts"
# Each demo incident's resolution carries its checklist as it stood then, every item passed.
resolved=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from runbook_history where kind = 'incident_resolved'")
recorded=$(psql -X -tA "$DATABASE_URL" -c "select count(*) from runbook_history where kind = 'incident_resolved'
  and jsonb_array_length(details -> 'checklist') > 0
  and not jsonb_path_exists(details -> 'checklist', '\$[*] ? (@.ok == false)')")
[ "$resolved" -ge 4 ] && [ "$recorded" = "$resolved" ] \
  || fail "expected each of the demo's resolved incidents to carry a passed checklist: $recorded of $resolved do"
ok "demo data: $accounts accounts, $entries history entries, $runs cron runs, $alerts resolved alerts with notes"
verified=$(psql -X -tA "$DATABASE_URL" -c "select string_agg(store, ',' order by store) from backups where status = 'verified'")
[ "$verified" = clickhouse,postgres ] || fail "expected a verified demo backup of each store, found '$verified'"
# The application tables are the guarded service's: Salvage's application role may not
# read them (only the owner, as backups and restores do), and the run checks both.
if [ -n "${SALVAGE_MIGRATE_DATABASE_URL:-}" ] \
  && psql -X -tA "$DATABASE_URL" -c "select count(*) from api_keys" >/dev/null 2>&1; then
  fail "Salvage's application role can read the service's own table api_keys"
fi
keys=$(psql -X -tA "${SALVAGE_MIGRATE_DATABASE_URL:-$DATABASE_URL}" -c "select count(*) from api_keys")
[ "$keys" -gt 0 ] || fail "expected the demo application tables to hold keys"
[ -f "$SALVAGE_BACKUP_DIR/postgres/$(psql -X -tA "$DATABASE_URL" -c "select min(id) from backups where store = 'postgres'")/manifest.json" ] \
  || fail "the demo backup's manifest is not in $SALVAGE_BACKUP_DIR"
ok "demo backups: one verified backup of each store in $SALVAGE_BACKUP_DIR, $keys application keys protected"

# The fresh demo opens no alert a person would not act on: a second drill on its data (a
# person trying the button, which once raised "508 ms, over 1.25 times the median of
# 307 ms"), then the self-monitor. What may be open is only what the demo stages on
# purpose, each with the act it asks for.
target/release/salvage drill run --reason "test-run: a second drill" >"$dir/drill.log" 2>&1 \
  || { cat "$dir/drill.log" >&2; fail "a second drill on the demo's data did not pass"; }
target/release/salvage cron run self-monitor --reason "test-run: evaluate" >"$dir/monitor.log" 2>&1 \
  || { cat "$dir/monitor.log" >&2; fail "the self-monitor did not run"; }
# webhook_paused, dlq_growing: the demo's receiver that answers 500 (resume it once
# fixed, redrive its dead letters).
staged="'webhook_paused','dlq_growing'"
open=$(psql -X -tA "$DATABASE_URL" -c "select kind || ' ' || dedup_key || ': ' || title from internal_alerts
  where status <> 'resolved' and kind not in ($staged) order by kind, dedup_key")
[ -z "$open" ] || fail "the fresh demo opened alerts nobody would act on:
$open"
ok "the fresh demo opens no alert beyond the ones it stages ($staged)"

rows=0
for _ in $(seq 1 60); do
  rows=$(curl -fsS "$CLICKHOUSE_URL/?user=${CLICKHOUSE_USER:-default}&password=${CLICKHOUSE_PASSWORD:-}" --data-binary "SELECT count() FROM $CLICKHOUSE_DATABASE.requests" 2>/dev/null || echo 0)
  [ "$rows" -gt 0 ] && break
  sleep 0.5
done
[ "$rows" -gt 0 ] || fail "the demo traffic never reached ClickHouse"
ok "demo traffic is flowing ($rows request rows in ClickHouse)"

# Deploying is copying one file: the binary alone, in an empty folder, serves the console
# and its client (a second replica on the same stores, its scheduler off).
mkdir -p "$dir/deploy" && cp target/release/salvage "$dir/deploy/"
DEPLOYED=127.0.0.1:$((PORT + 1))
(cd "$dir/deploy" && SALVAGE_ADDR=$DEPLOYED SALVAGE_PUBLIC_URL=http://$DEPLOYED SALVAGE_SCHEDULER=off \
  exec ./salvage serve >"$dir/deployed.log" 2>&1) &
deployed=$!
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://$DEPLOYED/admin/login" 2>/dev/null && break; sleep 0.2; done
curl -fsS -o "$dir/deployed.wasm" "http://$DEPLOYED/pkg/salvage.wasm" || { kill "$deployed"; fail "the copied binary does not serve its client"; }
kill "$deployed"; wait "$deployed" 2>/dev/null || true
cmp -s "$dir/deployed.wasm" target/site/pkg/salvage.wasm || fail "the copied binary serves another client than the build made"
grep -q 'embedded' "$dir/deployed.log" || fail "the copied binary did not say it serves its embedded site"
ok "the binary alone, copied to an empty folder, serves the console and its client"

kill -TERM -- "-$run"
for _ in $(seq 1 100); do kill -0 "$run" 2>/dev/null || break; sleep 0.1; done
kill -0 "$run" 2>/dev/null && fail "make run still running 10 s after SIGTERM"
run=
curl -fsS -o /dev/null "$BASE/admin/login" 2>/dev/null && fail "the console still answers after make run stopped"
ok "make run stops on SIGTERM"
