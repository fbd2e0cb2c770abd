#!/usr/bin/env bash
# End-to-end tests of the GPU agent: the real `wattwise` binary loads the fake NVML
# (tests/fake-nvml, built as libnvidia_ml.so) through nvml-wrapper, and talks to the
# real local endpoint `wattwise-server` (started by e2e.py on a free 127.0.0.1 port in
# its own process group, killed by group). Needs only python3 (standard library)
# and cargo. Exits non-zero on any failure. e2e.py: one host per test;
# multihost.py: a run across three fake hosts (one agent each).
#
# Settings: CARGO_TARGET_DIR (default ~/.cache/wattwise-target); arguments select
# tests by name substring (e.g. `tests/agent/run.sh selector sigkill`).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"

if ! command -v python3 >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3 >/dev/null
    else
        echo "tests/agent: python3 is required" >&2
        exit 1
    fi
fi

cargo build -q -p wattwise-agent -p fake-nvml
cargo build -q -p wattwise-lambda --bin wattwise-server

export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
export FAKE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
export WATTWISE_SERVER_BIN="$CARGO_TARGET_DIR/debug/wattwise-server"
rc=0
python3 tests/agent/e2e.py "$@" || rc=1
# A run across hosts: three agents, three fake hosts of 8 GPUs, one server.
python3 tests/agent/multihost.py "$@" || rc=1
exit "$rc"
