#!/usr/bin/env bash
# What a Leptos islands client weighs with this project's toolchain (Leptos, the release
# profile, wasm-bindgen, binaryen's wasm-opt -Oz, as scripts/build.sh uses them): the
# floor under any islands rewrite of the console. Prints gzip -9 of WASM + JS for two
# probes: "bare" (one island, a signal and a timer) and "live" (one island with a
# resource refreshed by a timer, a <Transition> and an ActionForm on server functions).
# Uses the workspace's Cargo.lock, so the versions are the console's. About two minutes
# the first time. Not part of `make test`.
#
#   scripts/islands-probe.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$ROOT/end2end/node_modules/.bin:$PATH"
PROBE="$ROOT/scripts/islands-probe"
OUT="$ROOT/target/islands-probe"
mkdir -p "$OUT"
cp "$ROOT/Cargo.lock" "$PROBE/Cargo.lock"
trap 'rm -f "$PROBE/Cargo.lock"' EXIT
for variant in bare live; do
  features=()
  [ "$variant" = live ] && features=(--features live)
  CARGO_TARGET_DIR="$OUT/target" cargo build --quiet --manifest-path "$PROBE/Cargo.toml" \
    --lib --target wasm32-unknown-unknown --profile wasm-release "${features[@]}"
  rm -rf "$OUT/$variant"
  wasm-bindgen --target web --out-dir "$OUT/$variant" \
    "$OUT/target/wasm32-unknown-unknown/wasm-release/islands_probe.wasm"
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types \
    "$OUT/$variant/islands_probe_bg.wasm" -o "$OUT/$variant/opt.wasm"
  wasm=$(gzip -9 -c "$OUT/$variant/opt.wasm" | wc -c)
  js=$(gzip -9 -c "$OUT/$variant/islands_probe.js" | wc -c)
  printf 'islands probe %-4s  WASM %7d + JS %6d bytes gzip -9 = %4d KB\n' \
    "$variant" "$wasm" "$js" $(( (wasm + js) / 1024 ))
done
