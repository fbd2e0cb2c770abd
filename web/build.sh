#!/usr/bin/env bash
# Builds the what-if page into web/dist: the core's browser bindings (wasm32 +
# wasm-bindgen) and the page (Vite). Installs what a fresh machine lacks, and only
# that: the wasm32 target, the wasm-bindgen CLI matching the pinned crate, and the
# npm packages (npm ci, skipped when node_modules matches package-lock.json).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export PATH="$HOME/.cargo/bin:$PATH"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
want=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' "$root/Cargo.toml")
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$want" ]; then
  echo "web/build.sh: installing wasm-bindgen-cli $want (takes a few minutes)"
  cargo install wasm-bindgen-cli --version "$want"
fi
# Node.js 20.19+ and npm (Vite 7's floor): installed with apt when missing and the
# distribution's package is new enough; otherwise say what to install.
node_ok() { command -v npm >/dev/null && node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; }
if ! node_ok && command -v apt-get >/dev/null; then
  echo "web/build.sh: installing Node.js and npm (apt)"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq nodejs npm >/dev/null || true
fi
if ! node_ok; then
  echo "web/build.sh: needs Node.js 20.19 or newer with npm (found: $(node --version 2>/dev/null || echo none)); install it from https://nodejs.org/ or your distribution, then run this again" >&2
  exit 1
fi

cd "$root"
cargo build -p wattwise-wasm --target wasm32-unknown-unknown --release --no-default-features --features browser
rm -rf "$here/src/wasm"
wasm-bindgen --target web --out-dir "$here/src/wasm" --out-name wattwise \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/wattwise_wasm.wasm"

cd "$here"
# npm ci only when the installed tree is not the locked one.
if ! cmp -s package-lock.json node_modules/.package-lock.stamp 2>/dev/null; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.package-lock.stamp
fi
npx --no-install vite build --logLevel warn
echo "web/build.sh: built $here/dist"
