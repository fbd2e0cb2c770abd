#!/usr/bin/env bash
# Read-only check of the agent's meter on a real NVIDIA GPU (not part of `make
# test`: it needs a driver, and torch with CUDA for its workload): `wattwise gpus`,
# `measure` around an idle-then-heavy-then-light workload against NVML's own
# counter delta and 50 ms power sampling, the counter update period found,
# CUDA_VISIBLE_DEVICES by UUID, a bad GPU name, and the exporter against
# nvidia-smi. It never sets a power limit, clock or mode (it fails if any limit
# changed). Put what it prints in BENCHMARKS.md (## GPU agent).
#
# `tests/gpu/run.sh --fake` runs the same checks against the fake NVML (two GPUs,
# a 100 ms counter, power averaged over 1 s, a stepping load), in seconds;
# tests/agent/run.sh runs it so the script cannot rot.
#
# Settings: CARGO_TARGET_DIR (default ~/.cache/wattwise-target); WATTWISE_BIN (an
# agent to check instead of building one).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"

if [ "${1:-}" = "--fake" ]; then
    cargo build -q -p wattwise-agent -p fake-nvml
    export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
    export WATTWISE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
    state="$(mktemp -d)"
    trap 'rm -rf "$state"' EXIT
    export FAKE_NVML_STATE="$state/state.json" FAKE_NVML_COUNT=2 \
        FAKE_NVML_LOAD_STEPS="60:0.3,300:0.6,120:0.6" \
        FAKE_NVML_COUNTER_MS=100 FAKE_NVML_POWER_AVERAGE_MS=1000
    python3 tests/gpu/check.py --fake
else
    if [ -z "${WATTWISE_BIN:-}" ]; then
        cargo build -q -p wattwise-agent
        export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
    fi
    python3 tests/gpu/check.py
fi
