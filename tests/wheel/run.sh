#!/usr/bin/env bash
# The wheels as a user gets them (issue 22):
#   1. builds both wheels with .ci/wheel.sh (what `make wheel` runs), which checks
#      each one's manylinux tag (auditwheel show: 2_28 or older) and size (< 15 MB);
#   2. installs the x86_64 wheel into a fresh venv, and from a folder outside the
#      checkout (no checkout on any path) runs `wattwise --version`, a simulation,
#      `wattwise serve` on a free 127.0.0.1 port (own process group, stopped by
#      group): /healthz, the page built into the binary, and one whole job of Zeus's
#      own client (zeus==0.16.0, tests/conformance/zeus_train.py, in the endpoint
#      venv) through it; then the Python API against the fake NVML (api_test.py);
#   3. the aarch64 wheel's binary under qemu-user: `--version` and a simulation.
# Exits non-zero on any failure.
#
# Settings: CARGO_TARGET_DIR (default ~/.cache/wattwise-target); the wheels go to
# $CARGO_TARGET_DIR/wheels.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
source tests/lib/procs.sh
procs_tag=wheel
work="$(mktemp -d /tmp/wattwise-wheel-XXXXXX)"
trap finish_work EXIT
fail() { echo "wheel: $*" >&2; exit 1; }
step() { printf '\n---- wheel: %s ----\n' "$*"; }

command -v qemu-aarch64 >/dev/null && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] \
    || fail "needs qemu-user and libc6-arm64-cross (Debian packages; .ci/setup.sh installs them)"
endpoint_venv="$(bash tests/endpoint/setup.sh | tail -n 1)"

step "build both wheels (.ci/wheel.sh)"
started=$(date +%s)
out="$CARGO_TARGET_DIR/wheels"
WATTWISE_WHEEL_OUT="$out" bash .ci/wheel.sh >"$work/wheels.txt"
echo "wheel: built in $(($(date +%s) - started)) s: $(tr '\n' ' ' <"$work/wheels.txt")"
x86=$(grep '_x86_64\.whl$' "$work/wheels.txt") || fail "no x86_64 wheel"
arm=$(grep '_aarch64\.whl$' "$work/wheels.txt") || fail "no aarch64 wheel"

cargo build -q -p fake-nvml
fake="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"

step "the x86_64 wheel in a fresh venv, outside the checkout"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check --no-index --no-deps "$x86"
home="$work/home"
mkdir -p "$home"
cp tests/wheel/api_test.py tests/conformance/zeus_train.py "$home/"
cd "$home"
unset PYTHONPATH
export PATH="$work/venv/bin:$PATH"
bin=$(command -v wattwise)
[ "$bin" = "$work/venv/bin/wattwise" ] || fail "wattwise resolves to $bin, not the venv's"
[ -f "$bin" ] && [ ! -L "$bin" ] && head -c 4 "$bin" | grep -q ELF \
    || fail "$bin is not an executable file of its own (setcap needs one)"
wattwise --version | grep -q '^wattwise ' || fail "wattwise --version: $(wattwise --version)"
wattwise simulate --dataset imagenet --gpu v100 >"$work/sim.txt"
grep -q 'oracle' "$work/sim.txt" || fail "simulate printed no oracle line: $(cat "$work/sim.txt")"

port=$(free_port)
start serve wattwise serve --listen "127.0.0.1:$port" --db "$work/serve.db"
base="http://127.0.0.1:$port"
wait_for "$base/healthz" serve 30
curl -fsS "$base/" >"$work/index.html"
grep -qi '<!doctype html>' "$work/index.html" || fail "GET / is not the page"
# Every asset the page names is served from the binary, with its type.
for asset in $(grep -o '\./assets/[^"]*' "$work/index.html" | sort -u); do
    curl -fsS -o /dev/null "$base/${asset#./}" || fail "GET ${asset#./} failed"
done
job="zeusclient-wheel-$(date +%s)"
"$endpoint_venv/bin/python" zeus_train.py "$base" "$job" >"$work/zeus.txt" \
    || fail "Zeus's client failed: $(cat "$work/zeus.txt")"
grep '^{' "$work/zeus.txt" | tail -n 1 | grep -q '"outcome": "converged"' \
    || fail "Zeus's client did not converge: $(cat "$work/zeus.txt")"
curl -fsS "$base/jobs/$job/trials" >"$work/trials.json"
grep -q '"Succeeded"' "$work/trials.json" || fail "no succeeded trial stored"
stop_last

WATTWISE_NVML_LIB="$fake" python api_test.py

# README.md's Python example of the measurement window, as written (with a
# stand-in for its training function), against the fake NVML.
python3 - "$root/README.md" >readme_example.py <<'PY'
import re, sys
blocks = [b for b in re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S)
          if "from wattwise import Monitor" in b]
assert len(blocks) == 1, f"README.md: {len(blocks)} Python blocks with the Monitor example"
assert len(blocks[0].strip().splitlines()) <= 5, "README.md's Monitor example is over five lines"
print("import time\ndef train_one_epoch():\n    time.sleep(0.2)\n" + blocks[0])
PY
WATTWISE_NVML_LIB="$fake" python readme_example.py | grep -Eq '^0\.[0-9] s, [0-9]+ J$' \
    || fail "README.md's Monitor example printed: $(WATTWISE_NVML_LIB="$fake" python readme_example.py 2>&1)"

# Zeus's own ZeusMonitor (nvidia-ml-py loads libnvidia-ml.so.1: the fake) and the
# same script with only its import changed to wattwise's: same keys, energies
# within 0.5% of each other and of the fake's ground truth.
mkdir -p "$work/nvml"
ln -s "$fake" "$work/nvml/libnvidia-ml.so.1"
cp "$root/tests/wheel/zeus_windows.py" zeus_windows.py
sed 's/^from zeus.monitor import ZeusMonitor$/from wattwise import ZeusMonitor/' zeus_windows.py >wattwise_windows.py
[ "$(diff zeus_windows.py wattwise_windows.py | grep -c '^[<>]')" = 2 ] || fail "the import line was not the only change"
# Run twice: on 2 GPUs, and on 4 whose draws differ (the state file's limits:
# 300, 300, 150 and 200 W at the 250 W load) under CUDA_VISIBLE_DEVICES=2,3,
# where Zeus's CUDA indices 0 and 1 are NVML GPUs 2 and 3 (the scripts read the
# truth of those; measuring GPUs 0 and 1 instead would be 25% and 67% off).
compare_zeus() {
    "$endpoint_venv/bin/python" -W ignore zeus_windows.py >"$work/zeus_windows.json"
    python wattwise_windows.py >"$work/wattwise_windows.json"
    python - "$1" "$work/zeus_windows.json" "$work/wattwise_windows.json" <<'PY'
import json, sys
label = sys.argv[1]
zeus, ours = (json.load(open(p)) for p in sys.argv[2:])
assert zeus["gpus"] == ours["gpus"] == [0, 1], (label, zeus["gpus"], ours["gpus"])
for name in ("outer", "inner"):
    z, w = zeus["windows"][name], ours["windows"][name]
    assert set(z) == set(w) and set(z["gpu_energy"]) == set(w["gpu_energy"]), (label, z, w)
    for gpu, ze in z["gpu_energy"].items():
        we = w["gpu_energy"][gpu]
        assert abs(we - ze) <= 0.005 * ze, f"{label} {name} GPU {gpu}: wattwise {we} J, Zeus {ze} J"
        for who, e, run in (("Zeus", ze, z), ("wattwise", we, w)):
            truth = run["truth"][gpu]
            assert abs(e - truth) <= 0.005 * truth, f"{label} {name} GPU {gpu}: {who} {e} J, truth {truth} J"
    print(f"wheel: {label}: {name}: Zeus {z['total_energy']:.3f} J, wattwise {w['total_energy']:.3f} J")
PY
}
export LD_LIBRARY_PATH="$work/nvml"
FAKE_NVML_COUNT=2 compare_zeus "2 GPUs"
python3 -c 'import json, sys, time
t = time.monotonic_ns()
json.dump({"gpus": [{"limit_mw": w * 1000, "energy_mj": 0.0, "since_ns": t} for w in (300, 300, 150, 200)]},
          open(sys.argv[1], "w"))' "$work/fake-state.json"
FAKE_NVML_COUNT=4 FAKE_NVML_STATE="$work/fake-state.json" CUDA_VISIBLE_DEVICES=2,3 \
    compare_zeus "CUDA_VISIBLE_DEVICES=2,3 of 4 GPUs"
unset LD_LIBRARY_PATH
cd "$root"

step "the aarch64 binary under qemu-user"
mkdir -p "$work/arm"
python3 -m zipfile -e "$arm" "$work/arm"
armbin=$(ls "$work"/arm/wattwise-*.data/scripts/wattwise)
chmod +x "$armbin"  # zipfile drops the mode that pip sets
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
qemu-aarch64 "$armbin" --version | grep -q '^wattwise ' || fail "aarch64 --version"
qemu-aarch64 "$armbin" simulate --dataset imagenet --gpu v100 >"$work/arm-sim.txt"
grep -q 'oracle' "$work/arm-sim.txt" || fail "aarch64 simulate printed no oracle line: $(cat "$work/arm-sim.txt")"
echo "wheel: all passed"
