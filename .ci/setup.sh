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
# The wheels' test (tests/wheel) runs the aarch64 binary under qemu-user, with
# Debian's arm64 glibc as its root.
if ! command -v qemu-aarch64 >/dev/null || [ ! -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ]; then
  if command -v apt-get >/dev/null; then
    echo "setup: installing qemu-user and libc6-arm64-cross (apt)"
    sudo_=""
    [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
      --no-install-recommends qemu-user libc6-arm64-cross >/dev/null
  fi
fi
