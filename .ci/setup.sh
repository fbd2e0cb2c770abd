#!/usr/bin/env bash
# Installs what a fresh machine lacks for the Rust side: the wasm32 target, rustfmt and
# clippy, and the wasm-bindgen CLI matching the pinned crate. Idempotent: checks first.
set -euo pipefail

rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
want=0.2.130
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$want" ]; then
  echo "setup: installing wasm-bindgen-cli $want (takes a few minutes)"
  cargo install wasm-bindgen-cli --version "$want"
fi
