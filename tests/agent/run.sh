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
# The meter over 50 real-time windows (20 ms to 2 s) per measurement behaviour
# of the fake NVML (issue 23), through nvml-wrapper; the fake reads its
# behaviour once per process, so one test process each.
if [ "$#" -eq 0 ] || [[ " $* " == *" meter "* ]]; then
    for behaviour in "" \
        "FAKE_NVML_COUNTER_MS=100 FAKE_NVML_QUANTUM_MJ=1000" \
        "FAKE_NVML_COUNTER_MS=100 FAKE_NVML_POWER_AVERAGE_MS=1000" \
        "FAKE_NVML_COUNTER_MS=100 FAKE_NVML_POWER_AVERAGE_MS=250" \
        "FAKE_NVML_COUNTER_MS=100 FAKE_NVML_POWER_AVERAGE_MS=1000 FAKE_NVML_SENSOR_DUTY=0.25" \
        "FAKE_NVML_COUNTER_MS=100 FAKE_NVML_POWER_AVERAGE_MS=1000 FAKE_NVML_DRIFT=0.02" \
        "FAKE_NVML_NO_ENERGY=all"; do
        echo "meter through the fake NVML: ${behaviour:-exact counter}"
        log="$(mktemp)"
        # shellcheck disable=SC2086
        if env WATTWISE_NVML_LIB="$FAKE_NVML_LIB" FAKE_NVML_LOAD_STEPS="350:0.07,120:0.11,300:0.25,80:0.13" $behaviour \
            cargo test -q -p wattwise-agent --lib fifty_real_windows -- --ignored --nocapture >"$log" 2>&1; then
            grep "behaviour learned" "$log"
        else
            cat "$log"
            rc=1
        fi
        rm -f "$log"
    done
fi
# The read-only real-GPU check, on the fake NVML, so it cannot rot.
if [ "$#" -eq 0 ] || [[ " $* " == *" gpu-check "* ]]; then
    bash tests/gpu/run.sh --fake || rc=1
fi
python3 tests/agent/e2e.py "$@" || rc=1
# A run across hosts: three agents, three fake hosts of 8 GPUs, one server.
python3 tests/agent/multihost.py "$@" || rc=1
exit "$rc"
