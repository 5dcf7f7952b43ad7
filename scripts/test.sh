#!/usr/bin/env bash
# Every check, in the order a failure is cheapest to find. Expects the stores to be
# running (make test starts them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }
started=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "no import cycles between source files"
python3 scripts/import-cycles.py app/src server/src

step "the layer check: every import allowed by docs/ARCHITECTURE.md's table (exceptions counted)"
python3 scripts/layers.py

step "clippy, server build (ssr), warnings denied, with the SQL checked against a live schema"
# Expands every sqlx::query! against the migrations and fails when .sqlx/ is stale.
scripts/sqlx-prepare.sh --check

step "clippy again, offline from .sqlx/ (as every other build compiles)"
cargo clippy -p salvage -p app --all-targets --features app/ssr -- -D warnings

step "clippy, browser builds (wasm32: the hydrate client and the live refresh), warnings denied"
cargo clippy -p frontend -p live --target wasm32-unknown-unknown -- -D warnings

step "the release build make run serves (server + WASM client), with the client's size"
# One build for every step below that runs Salvage: the browser tests, the make run
# check and the stores check all use this artifact.
scripts/build.sh --if-changed

step "unit and integration tests (real PostgreSQL + ClickHouse)"
cargo test -p salvage -p app --features app/ssr --no-run
# The tests take about six minutes on two cores; a test that hangs fails the run here
# instead of holding CI until its own limit. Without backtraces a failure ends the log
# with its message, where a reader of the log's tail sees it.
RUST_BACKTRACE=0 timeout 900 cargo test -p salvage -p app --features app/ssr || {
  status=$?
  [ "$status" -eq 124 ] && echo "tests: still running after 15 minutes; a test hangs" >&2
  exit "$status"
}

step "ClickHouse cluster tests (ZooKeeper + two replicas of one shard, real outages)"
# Ignored in the run above; here against the cluster scripts/cluster.sh starts.
scripts/stores.sh start cluster
RUST_BACKTRACE=0 timeout 600 cargo test -p salvage -p app --features app/ssr -- --ignored cluster:: || {
  status=$?; scripts/stores.sh stop cluster; exit "$status"
}
scripts/stores.sh stop cluster

step "browser tests against the release build (Playwright driving Debian's Chromium)"
scripts/e2e.sh

step "the local stores script, and Salvage following a real ClickHouse stop and start"
scripts/test-stores.sh

step "recovery from total loss: both servers' data deleted, salvage recover onto empty ones, every row counted"
scripts/test-recover.sh

step "make run on fresh stores serves the console with its demo data"
scripts/test-run.sh

printf '\nAll checks passed in %ss.\n' "$(( $(date +%s) - started ))"
