#!/usr/bin/env bash
# The quick check before a commit (`make check`, a few minutes warm): format, clippy
# over the workspace, the core's purity and module order, one retry driver, the
# product's own data, the docs' names, then the unit tests (libraries and binaries,
# no suites).
# `--static` stops before the unit tests: `make test` runs every test itself.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export CARGO_TERM_COLOR=never
step() { printf '\n==== %s ====\n' "$*"; }

rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "core is sans-I/O"
bash .ci/check-pure-core.sh

step "core modules import in one direction"
python3 .ci/check-module-dag.py core/src

step "every retry goes through core/src/retry.rs"
python3 .ci/check-retry-loops.py

step "the product carries its data"
bash .ci/check-self-contained.sh

step "the docs name what exists"
python3 .ci/check-docs.py

if [ "${1:-}" = "--static" ]; then
  exit 0
fi

step "unit tests"
cargo test --workspace --lib --bins
