#!/usr/bin/env bash
# Regenerates `.sqlx/`, the offline data of the compile-checked queries (sqlx::query!),
# so that every build, CI's included, type-checks SQL without a database.
#
#   scripts/sqlx-prepare.sh           rewrite .sqlx/ from the current migrations and code
#   scripts/sqlx-prepare.sh --check   fail if .sqlx/ is not what the code needs (CI)
#
# It applies migrations/ to a scratch database on the local PostgreSQL, then re-checks
# the crates with the macros online (clippy, with the flags test.sh uses, so nothing else
# is rebuilt); the macros write one JSON file per query into SQLX_OFFLINE_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
set -a; . ./.env; set +a

DB=salvage_sqlx_prepare
# The schema's owner may create databases; the application role may not.
OWNER_URL=${SALVAGE_MIGRATE_DATABASE_URL:-$DATABASE_URL}
BASE=${OWNER_URL%/*}
psql -X -q -v ON_ERROR_STOP=1 "$BASE/postgres" -c "drop database if exists $DB with (force)" -c "create database $DB"
for migration in migrations/*.sql; do
  psql -X -q -v ON_ERROR_STOP=1 --single-transaction "$BASE/$DB" -f "$migration" >/dev/null
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; psql -X -q "$BASE/postgres" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true' EXIT
# Touch the crates that hold queries so the macros expand again.
touch app/src/lib.rs server/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$OUT" DATABASE_URL="$BASE/$DB" SALVAGE_MIGRATE_DATABASE_URL= \
  cargo clippy -q -p salvage -p app --all-targets --features app/ssr -- -D warnings
# The macros re-expand on the next offline build too.
touch app/src/lib.rs server/src/lib.rs

if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -q "$OUT" .sqlx >/dev/null 2>&1; then
    echo "sqlx: .sqlx/ is out of date with the queries or migrations; run scripts/sqlx-prepare.sh" >&2
    diff -r -q "$OUT" .sqlx >&2 || true
    exit 1
  fi
  echo "sqlx: offline query data is current ($(ls "$OUT" | wc -l) queries)"
else
  rm -rf .sqlx
  mkdir -p .sqlx
  cp "$OUT"/*.json .sqlx/
  echo "sqlx: wrote $(ls .sqlx | wc -l) queries to .sqlx/"
fi
