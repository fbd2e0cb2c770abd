#!/usr/bin/env bash
# `make wheel`: wattwise's wheels, one per platform (manylinux_2_28: x86_64 and
# aarch64), into dist/ (WATTWISE_WHEEL_OUT). Each holds the `wattwise` executable (the
# agent, with `wattwise serve` and the page built in) as a script pip installs into
# the venv's bin, the Python package (agent/python/src) and its native extension
# (agent/pyext, PyO3, abi3). Per platform, ONE cargo build (cargo-zigbuild: zig
# links against glibc 2.28) makes both the binary and the extension, so their
# dependencies compile once, in the `wheel` profile (see Cargo.toml);
# .ci/make_wheel.py packs them.
#
# Installs what is missing: the Rust targets (rustup), and a venv
# (~/.cache/wattwise-wheel-venv) with ziglang, cargo-zigbuild and auditwheel from
# PyPI. The page is built with web/build.sh (Node) unless WATTWISE_WEB_DIST names a
# built one. Settings: WATTWISE_WHEEL_TARGETS (default "x86_64 aarch64").
# Checks each wheel's tag with `auditwheel show` (manylinux 2_28 or older) and its
# size (< 15 MB); prints the wheels' paths on its last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export CARGO_TERM_COLOR=never
targets="${WATTWISE_WHEEL_TARGETS:-x86_64 aarch64}"
out="${WATTWISE_WHEEL_OUT:-$root/dist}"
venv="${WATTWISE_WHEEL_VENV:-$HOME/.cache/wattwise-wheel-venv}"
tag=wheel
max_bytes=$((15 * 1000 * 1000))

# The build tools, pinned (a new zig changes what is built).
tools="ziglang==0.17.1 cargo-zigbuild==0.24.1 auditwheel==6.8.2"
stamp="$venv/.tools-$(echo "$tools" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "$tag: installing $tools into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $tools
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"

for arch in $targets; do
    rustup target list --installed | grep -qx "$arch-unknown-linux-gnu" \
        || rustup target add "$arch-unknown-linux-gnu"
done

if [ -z "${WATTWISE_WEB_DIST:-}" ]; then
    bash web/build.sh >&2
    export WATTWISE_WEB_DIST="$root/web/dist"
fi
[ -f "$WATTWISE_WEB_DIST/index.html" ] || { echo "$tag: no page in $WATTWISE_WEB_DIST" >&2; exit 1; }

mkdir -p "$out"
built=()
for arch in $targets; do
    target="$arch-unknown-linux-gnu"
    echo "$tag: $target: the wattwise binary and the extension (one cargo build)" >&2
    began=$(date +%s)
    cargo zigbuild -q --profile wheel --target "$target.2.28" \
        -p wattwise-agent -p wattwise-py --bin wattwise --lib --features wattwise-py/extension-module >&2
    echo "$tag: $target: built in $(($(date +%s) - began)) s" >&2
    dir="$CARGO_TARGET_DIR/$target/wheel"
    # Each ELF file on its own: no symbol newer than glibc 2.28.
    for elf in "$dir/wattwise" "$dir/lib_native.so"; do
        newest=$(objdump -T "$elf" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
        if [ "$(printf '%s\nGLIBC_2.28\n' "$newest" | sort -V | tail -n 1)" != GLIBC_2.28 ]; then
            echo "$tag: $elf needs $newest, newer than manylinux_2_28's glibc" >&2
            exit 1
        fi
    done
    rm -f "$out"/wattwise-*"_$arch.whl"
    wheel=$("$venv/bin/python" .ci/make_wheel.py "$out" "manylinux_2_28_$arch" "$dir/wattwise" "$dir/lib_native.so")
    # The tag auditwheel finds from the ELF files' symbol versions: 2_28 or older.
    shown=$(auditwheel show "$wheel" 2>&1) || { echo "$shown" >&2; exit 1; }
    # (auditwheel wraps its lines, and the wheel's own name holds a tag: read the
    # tag it finds the wheel consistent with.)
    policy=$(echo "$shown" | tr '\n' ' ' | grep -o "following platform tag: \"manylinux_2_[0-9]*_$arch\"" \
        | grep -o "manylinux_2_[0-9]*_$arch")
    minor=$(echo "$policy" | sed -n 's/^manylinux_2_\([0-9]*\)_.*/\1/p')
    if [ -z "$minor" ] || [ "$minor" -gt 28 ]; then
        echo "$tag: auditwheel show $wheel: wanted manylinux_2_28 or older:" >&2
        echo "$shown" >&2
        exit 1
    fi
    size=$(stat -c %s "$wheel")
    if [ "$size" -ge "$max_bytes" ]; then
        echo "$tag: $wheel is $size bytes, over 15 MB" >&2
        exit 1
    fi
    echo "$tag: $(basename "$wheel"): $size bytes; auditwheel: $policy" >&2
    built+=("$wheel")
done
printf '%s\n' "${built[@]}"
