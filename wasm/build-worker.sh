#!/usr/bin/env bash
# Builds the Cloudflare Worker into wasm/build/worker/ (index.js + index_bg.wasm),
# the files wasm/worker.mjs (the module entry named in wasm/wrangler.toml) imports:
#   1. cargo build -p wattwise-wasm --target wasm32-unknown-unknown --release --features worker
#   2. wasm-bindgen --target web --out-name index (the CLI must match the pinned
#      wasm-bindgen, 0.2.130; installed with cargo when missing).
# Works offline once the crates are fetched. CARGO_TARGET_DIR is honoured
# (default ~/.cache/wattwise-target-worker); WATTWISE_WORKER_FEATURES (default
# `worker`) builds a test Worker (`store-contract`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target-worker}"
bindgen_version=0.2.130

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown >&2
fi
bindgen="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen || echo "$HOME/.cargo/bin/wasm-bindgen")}"
if ! "$bindgen" --version 2>/dev/null | grep -q " $bindgen_version\$"; then
    echo "build-worker: installing wasm-bindgen-cli $bindgen_version" >&2
    cargo install wasm-bindgen-cli --version "$bindgen_version" >&2
    bindgen="$HOME/.cargo/bin/wasm-bindgen"
fi

cd "$root"
cargo build -p wattwise-wasm --target wasm32-unknown-unknown --release \
    --features "${WATTWISE_WORKER_FEATURES:-worker}" >&2
out="$here/build/worker"
mkdir -p "$out"
"$bindgen" --target web --out-name index --no-typescript --out-dir "$out" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/wattwise_wasm.wasm"
echo "build-worker: $(wc -c <"$out/index_bg.wasm") bytes of wasm in $out" >&2
