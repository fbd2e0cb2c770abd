#!/usr/bin/env bash
# The cost of one begin_window + end_window pair (no synchronization), Zeus's
# ZeusMonitor (zeus==0.16.0, nvidia-ml-py, in the endpoint venv) beside
# wattwise's Zeus face (the x86_64 wheel in a fresh venv), in one run, against
# the fake NVML with FAKE_NVML_COUNT GPUs (default 2): tests/wheel/zeus_windows.py
# N (default 20000) pairs each, three rounds alternating. Needs the wheel built
# (`make wheel` or tests/wheel/run.sh: $CARGO_TARGET_DIR/wheels).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
n="${1:-20000}"
wheel=$(ls "$CARGO_TARGET_DIR"/wheels/wattwise-*x86_64.whl)
endpoint_venv="$(bash tests/endpoint/setup.sh | tail -n 1)"
cargo build -q --release -p fake-nvml
work="$(mktemp -d /tmp/wattwise-wheel-bench-XXXXXX)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check --no-index --no-deps "$wheel"
mkdir -p "$work/nvml"
ln -s "$CARGO_TARGET_DIR/release/libnvidia_ml.so" "$work/nvml/libnvidia-ml.so.1"
cp tests/wheel/zeus_windows.py "$work/zeus_windows.py"
sed 's/^from zeus.monitor import ZeusMonitor$/from wattwise import ZeusMonitor/' \
    "$work/zeus_windows.py" >"$work/wattwise_windows.py"
export FAKE_NVML_COUNT="${FAKE_NVML_COUNT:-2}" LD_LIBRARY_PATH="$work/nvml"
cd "$work"
pair() { "$1" -W ignore "$2" "$n" | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["pair_us"])'; }
for round in 1 2 3; do
    z=$(pair "$endpoint_venv/bin/python" zeus_windows.py)
    w=$(pair "$work/venv/bin/python" wattwise_windows.py)
    echo "round $round: begin_window + end_window, us per pair ($FAKE_NVML_COUNT GPUs): Zeus $z, wattwise $w"
done
