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
# Two roles, as in production: the owner makes the database and runs the migrations,
# Salvage works as the application role.
OWNER_BASE=${SALVAGE_MIGRATE_DATABASE_URL:-$DATABASE_URL}
OWNER_BASE=${OWNER_BASE%/*}
APP_BASE=${DATABASE_URL%/*}
psql -X -q -v ON_ERROR_STOP=1 "$OWNER_BASE/postgres" -c "drop database if exists $DB with (force)" -c "create database $DB"
curl -fsS "$CLICKHOUSE_URL/?user=${CLICKHOUSE_USER:-default}&password=${CLICKHOUSE_PASSWORD:-}" \
  --data-binary "DROP DATABASE IF EXISTS $DB" >/dev/null

export DATABASE_URL="$APP_BASE/$DB" CLICKHOUSE_DATABASE=$DB
if [ -n "${SALVAGE_MIGRATE_DATABASE_URL:-}" ]; then export SALVAGE_MIGRATE_DATABASE_URL="$OWNER_BASE/$DB"; fi
export SALVAGE_ADDR=127.0.0.1:$PORT SALVAGE_PUBLIC_URL=http://127.0.0.1:$PORT
# No LEPTOS_SITE_ROOT: the browser tests load the site embedded in the binary, as a
# deployment does.
unset LEPTOS_SITE_ROOT
# Backups of the e2e stores go to a folder of their own; side databases the tests make
# are dropped by them as the owner.
export SALVAGE_BACKUP_DIR="$ROOT/target/e2e-backups" SALVAGE_E2E_OWNER_URL="$OWNER_BASE/postgres"
rm -rf "$SALVAGE_BACKUP_DIR"
# The first cron secret (the rotation test checks it keeps working in the grace window);
# no in-process scheduler, so nothing drains the seeded queue behind a test's back.
export CRON_SECRET="e2e-cron-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export E2E_CRON_SECRET=$CRON_SECRET SALVAGE_SCHEDULER=off
# The dead-letter test's webhooks go to the demo receiver on this server.
export SALVAGE_WEBHOOK_ALLOW_PRIVATE=on SALVAGE_DEMO_RECEIVER=0
# Background migrations in small, paced chunks, so the migrations test can watch one run.
export SALVAGE_MIGRATION_CHUNK_ROWS=100 SALVAGE_MIGRATION_CHUNK_PAUSE_MS=600
export SALVAGE_BIN="$ROOT/target/release/salvage"
"$SALVAGE_BIN" migrate >/dev/null
# 250 rows parked in the requests queue, as an outage would leave them, for the queues
# page's replay test (the replay sends them to the real ClickHouse).
psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<'SQL'
insert into requests_fallback (organization_id, id, ts, row_json, last_error, last_attempt_at)
select 'org_e2e', u, now(), json_build_object(
         'id', u, 'ts', to_char(now() at time zone 'utc', 'YYYY-MM-DD HH24:MI:SS'), 'ts_ms', 0,
         'organization_id', 'org_e2e', 'project', 'e2e', 'provider', 'openai',
         'model', 'gpt-4o-mini', 'status', 200, 'latency_ms', 100, 'prompt_tokens', 10,
         'completion_tokens', 5, 'cost_usd', 0.0001, 'error', null)::text,
       'ClickHouse: network error (e2e seed)', now()
  from (select gen_random_uuid() as u from generate_series(1, 250)) rows;
-- 3,000 webhook events as the previous version stored them (no payload size), for the
-- payload-size backfill the migrations test watches.
insert into webhook_events (event_type, payload, idempotency_key, payload_digest, created_at)
select 'order.paid', json_build_object('order', n, 'amount', 1200)::jsonb, 'e2e-older-' || n,
       '\x00'::bytea, now() - interval '2 days'
  from generate_series(1, 3000) n;
SQL
# One account per role, made through the CLI (password on stdin, as documented).
export E2E_PASSWORD="e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
for role in operator manager admin; do
  printf '%s\n' "$E2E_PASSWORD" | "$SALVAGE_BIN" user add --email "$role@e2e.test" --role "$role" --reason "browser tests" >/dev/null
done
LOG=target/e2e-server.log
# Every secret the run creates or sends is listed here and looked for in the log, which
# is written at debug level (request traces included) to give a leak every chance.
export E2E_SECRETS_FILE="$ROOT/target/e2e-secrets.txt"
: >"$E2E_SECRETS_FILE"
RUST_LOG=debug,hyper=info,h2=info,sqlx=info,tower_sessions=info \
  "$SALVAGE_BIN" serve >"$LOG" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/health/deep" >/dev/null 2>&1 && break
  kill -0 $server 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.1
done

export BASE_URL=http://127.0.0.1:$PORT
# A first-admin link's token travels in a query string: a request carrying one must not
# log it (the route answers whether or not the token is valid).
SETUP_TOKEN="e2e-setup-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
curl -fsS -o /dev/null "$BASE_URL/admin/setup?token=$SETUP_TOKEN"
printf '%s\n%s\n%s\n' "$SETUP_TOKEN" "$CRON_SECRET" "$E2E_PASSWORD" >>"$E2E_SECRETS_FILE"
(cd end2end && npx playwright test "$@") || { echo "server log: $LOG"; exit 1; }
# Secrets the run created (a rotated cron secret, an ingest key, a temporary password)
# or sent (the first cron secret, the accounts' password, a setup token): none may reach
# the server's log. Fewer than six means a test stopped reporting what it saw.
count=$(grep -c . "$E2E_SECRETS_FILE")
if [ $# -eq 0 ] && [ "$count" -lt 6 ]; then
  echo "e2e: only $count secrets were noted in $E2E_SECRETS_FILE; expected at least 6" >&2
  exit 1
fi
if grep -F -f "$E2E_SECRETS_FILE" "$LOG" >/dev/null || grep -q "sgc_not-a-secret" "$LOG"; then
  echo "e2e: a secret appears in the server log ($LOG):" >&2
  grep -n -o -F -f "$E2E_SECRETS_FILE" "$LOG" | head -5 >&2
  exit 1
fi
echo "e2e: none of the $count secrets the run handled appears in the server log ($(wc -l <"$LOG") lines)"
