#!/usr/bin/env bash
# All of wattwise's tests, in order: lint, the Rust workspace, the wasm build, then
# the suites that run real hosts (endpoint, Worker, agent, browser). Each suite's
# script installs what it needs. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export CARGO_TERM_COLOR=never
step() { printf '\n==== %s ====\n' "$*"; }

step "setup"
bash .ci/setup.sh

# Format, clippy over the workspace, and the static checks: the same as `make check`.
bash .ci/check.sh --static

step "clippy: the wasm crate's faces"
# The wasm crate's two faces are features the workspace build leaves off.
cargo clippy -p wattwise-wasm --all-targets --features browser -- -D warnings
cargo clippy -p wattwise-wasm --features browser --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p wattwise-wasm --features worker --target wasm32-unknown-unknown -- -D warnings

step "core builds for wasm32"
cargo build -p wattwise-core --target wasm32-unknown-unknown

step "cargo test --workspace"
cargo test --workspace

for suite in tests/*/run.sh; do
  # tests/gpu/run.sh needs a real NVIDIA driver; tests/agent/run.sh runs its
  # checks against the fake NVML (`tests/gpu/run.sh --fake`).
  [ "$suite" = tests/gpu/run.sh ] && continue
  step "$suite"
  bash "$suite"
done

step "all suites passed"
