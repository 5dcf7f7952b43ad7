#!/usr/bin/env bash
# Installs what Salvage's build needs, skipping whatever is already there:
# the wasm32 target, rustfmt + clippy, cargo-leptos 0.3.10, wasm-bindgen-cli (the version
# in Cargo.lock), and the npm packages of end2end/ (Playwright and binaryen's wasm-opt,
# which cargo-leptos would otherwise download from GitHub), and pgBackRest.
# With --test it also installs Debian's Chromium for the browser tests and moto's S3
# server (from PyPI) for the backup tests.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf 'setup: %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "setup: need root for: $*" >&2; exit 1; fi
}

LEPTOS_VERSION=0.3.10
BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)

rustup target list --installed | grep -qx wasm32-unknown-unknown || {
  say "adding the wasm32-unknown-unknown target"; rustup target add wasm32-unknown-unknown; }
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done

if ! cargo leptos --version 2>/dev/null | grep -qx "cargo-leptos $LEPTOS_VERSION"; then
  say "installing cargo-leptos $LEPTOS_VERSION (about 20 minutes on two cores, once)"
  cargo install cargo-leptos --version "$LEPTOS_VERSION" --locked
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\b"; then
  say "installing wasm-bindgen-cli $BINDGEN_VERSION (must equal Cargo.lock's wasm-bindgen)"
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION"
fi

# pgBackRest: the engine of point-in-time recovery (scripts/stores.sh configures it).
command -v pgbackrest >/dev/null 2>&1 || {
  say "installing pgBackRest (apt)"; as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbackrest >/dev/null; }

command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || {
  say "installing Node.js and npm (apt)"; as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; }
stamp=end2end/node_modules/.salvage-lock
if [ ! -f "$stamp" ] || ! cmp -s end2end/package-lock.json "$stamp"; then
  say "installing npm packages of end2end/"
  (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  cp end2end/package-lock.json "$stamp"
fi

# An S3-compatible server for the backup tests: moto's standalone server, from PyPI, in
# a virtual environment of its own (pinned, so every run tests against the same server).
MOTO_VERSION=5.2.5
MOTO_DIR=${SALVAGE_MOTO_DIR:-$ROOT/.stores/moto}
if [ "${1:-}" = "--test" ] && ! "$MOTO_DIR/bin/pip" show moto 2>/dev/null | grep -qx "Version: $MOTO_VERSION"; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || {
    say "installing Python's venv (apt)"; as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
  say "installing moto $MOTO_VERSION's S3 server into $MOTO_DIR (pip)"
  rm -rf "$MOTO_DIR"
  python3 -m venv "$MOTO_DIR"
  "$MOTO_DIR/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [ "${1:-}" = "--test" ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Debian's Chromium for the browser tests (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
exit 0
