#!/usr/bin/env bash
# Browser tests against the release build `make run` serves (built here when a source
# changed since the last build): starts Salvage on a fresh pair of databases, runs
# Playwright (Debian's Chromium, never a downloaded browser), stops Salvage.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"

scripts/build.sh --if-changed

set -a; . ./.env; set +a
PORT=${SALVAGE_E2E_PORT:-3107}
DB=salvage_e2e
BASE=${DATABASE_URL%/*}
psql -X -q -v ON_ERROR_STOP=1 "$BASE/postgres" -c "drop database if exists $DB with (force)" -c "create database $DB"
curl -fsS "$CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null

export DATABASE_URL="$BASE/$DB" CLICKHOUSE_DATABASE=$DB
export SALVAGE_ADDR=127.0.0.1:$PORT SALVAGE_PUBLIC_URL=http://127.0.0.1:$PORT
export LEPTOS_SITE_ROOT=target/site
# The first cron secret (the rotation test checks it keeps working in the grace window);
# no in-process scheduler, so nothing drains the seeded queue behind a test's back.
export CRON_SECRET="e2e-cron-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export E2E_CRON_SECRET=$CRON_SECRET SALVAGE_SCHEDULER=off
export SALVAGE_BIN="$ROOT/target/release/salvage"
"$SALVAGE_BIN" migrate >/dev/null
# 250 rows parked in the requests queue, as an outage would leave them, for the queues
# page's replay test (the replay sends them to the real ClickHouse).
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<'SQL'
insert into requests_fallback (id, ts, row_json, last_error, last_attempt_at)
select u, now(), json_build_object(
         'id', u, 'ts', to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS'), 'ts_ms', 0,
         'organization_id', 'org_e2e', 'project', 'e2e', 'provider', 'openai',
         'model', 'gpt-4o-mini', 'status', 200, 'latency_ms', 100, 'prompt_tokens', 10,
         'completion_tokens', 5, 'cost_usd', 0.0001, 'error', null)::text,
       'ClickHouse: network error (e2e seed)', now()
  from (select gen_random_uuid() as u from generate_series(1, 250)) rows;
SQL
# One account per role, made through the CLI (password on stdin, as documented).
export E2E_PASSWORD="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
for role in operator manager admin; do
  printf '%s\n' "$E2E_PASSWORD" | "$SALVAGE_BIN" user add --email "$role@e2e.test" --role "$role" --reason "browser tests" >/dev/null
done
LOG=target/e2e-server.log
"$SALVAGE_BIN" serve >"$LOG" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health/deep" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done

export BASE_URL=http://127.0.0.1:$PORT
(cd end2end && npx playwright test "$@") || { echo "server log: $LOG"; exit 1; }
# The tests sent the first cron secret, a rotated one and a wrong one (all `sgc_…` or
# CRON_SECRET): none of them may reach the server's log.
if grep -q -e "$CRON_SECRET" -e "sgc_" "$LOG"; then
  echo "e2e: a cron secret appears in the server log ($LOG)" >&2
  exit 1
fi
