#!/usr/bin/env bash
# The release build that `make run` serves and `make test` tests: the server binary
# (target/release/salvage) and the site (target/site: the WASM client, its JS glue and
# the stylesheet), with binaryen's wasm-opt from end2end/node_modules. `--split` cuts
# the client at each page's lazy route (app/src/lib.rs): a shell every page loads and
# one chunk per page, plus the chunks of code some pages share. `--precompress`
# writes brotli and gzip copies of each site file and makes cargo-leptos build the site
# before the server, so the server's build script embeds this build's site (deploying is
# copying the one binary). Prints what the browser downloads, raw and gzip, so growth
# shows in every CI log.
#
#   scripts/build.sh               build (cargo-leptos rebuilds what changed; its WASM
#                                  post-processing alone takes about 50 s every time)
#   scripts/build.sh --if-changed  skip the build when no input is newer than the last
#                                  one: what `make run` and `make test` use, so the one
#                                  build is shared by every step that needs it
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"

# Everything the release build reads. A toolchain upgrade is not on the list: after one,
# run scripts/build.sh without --if-changed.
INPUTS=(app frontend live server style migrations .sqlx Cargo.toml Cargo.lock .cargo end2end/package-lock.json)
# The last build's start time and the checksums of what it made: the build is current
# when no input is newer and the outputs are still the ones it made (a debug
# `cargo leptos build` rewrites target/site, for one).
STAMP=target/.release-build
OUTPUTS=(target/release/salvage target/site/pkg/salvage.wasm target/site/pkg/salvage.js target/site/pkg/salvage.css
  target/site/live/live.js target/site/live/live_bg.wasm)
current() {
  [ -f "$STAMP" ] && sha256sum --check --status "$STAMP" 2>/dev/null &&
    [ -z "$(find "${INPUTS[@]}" -newer "$STAMP" -print -quit 2>/dev/null)" ]
}

if [ "${1:-}" = "--if-changed" ] && current; then
  echo "build: target/release/salvage and target/site are newer than every source; not rebuilding"
else
  # Stamped with the build's start, to the nanosecond, so a file saved during the build
  # counts as newer and one saved just before it (in the same second) does not.
  rm -f "$STAMP"; mkdir -p target; begun=$(date +%s.%N)
  # The live refresh of the pages served without the client (live/, a crate of its
  # own), built into cargo-leptos's assets folder (`assets-dir` in Cargo.toml), which it
  # copies to target/site/live and precompresses before it builds the server (which
  # embeds every file of target/site).
  cargo build --profile wasm-release --target wasm32-unknown-unknown -p live
  rm -rf target/assets/live; mkdir -p target/assets/live
  wasm-bindgen --target web --no-typescript --out-dir target/assets/live --out-name live \
    target/wasm32-unknown-unknown/wasm-release/live.wasm
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    -o target/assets/live/live_bg.wasm target/assets/live/live_bg.wasm
  cargo leptos build --release --precompress --split
  sha256sum "${OUTPUTS[@]}" >"$STAMP.new"
  touch -d "@$begun" "$STAMP.new"
  mv "$STAMP.new" "$STAMP"
fi

group() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; }
size_line() {
  local file=$1 brotli=-
  [ -f "$file.br" ] && brotli=$(group "$(stat -c %s "$file.br")")
  printf '  %-18s %11s bytes raw %11s bytes gzip -9 %11s bytes brotli (served)\n' "${file#target/site/}" \
    "$(group "$(stat -c %s "$file")")" "$(group "$(gzip -9 -c "$file" | wc -c)")" "$brotli"
}
echo "build: the client's shell, which every hydrated page loads, and the live refresh of the pages served without it (target/site/pkg):"
for file in target/site/pkg/salvage.wasm target/site/pkg/salvage.js target/site/pkg/salvage.css \
  target/site/live/live_bg.wasm target/site/live/live.js; do
  size_line "$file"
done
# And per page: the shell plus the page's own WASM chunks (`--split`).
python3 scripts/page-sizes.py target/site/pkg
