#!/usr/bin/env bash
# The agent's CPU use while measuring (release build, fake NVML, local server), and
# its peak memory while a script writes 1 GiB of short lines to its events file.
# Figures go to BENCHMARKS.md (## GPU agent). Exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
cargo build -q --release -p wattwise-agent -p fake-nvml
cargo build -q -p wattwise-lambda --bin wattwise-server
export WATTWISE_BIN="$CARGO_TARGET_DIR/release/wattwise"
export FAKE_NVML_LIB="$CARGO_TARGET_DIR/release/libnvidia_ml.so"
export WATTWISE_SERVER_BIN="${WATTWISE_SERVER_BIN:-$CARGO_TARGET_DIR/debug/wattwise-server}"
python3 tests/agent/bench.py
WATTWISE_EVENTS_FLOOD_MB=1024 python3 tests/agent/e2e.py flood
