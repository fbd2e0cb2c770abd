#!/usr/bin/env bash
# Runs every shell command of README.md's "Install" and "Quick start" sections, as
# written, so the README cannot go stale: each must exit 0. Those that touch a GPU
# run against the fake NVML (tests/fake-nvml, as tests/agent loads it:
# WATTWISE_NVML_LIB and a FAKE_NVML_STATE file); `make run` runs on a free
# 127.0.0.1 port in its own process group until it serves the page and /healthz,
# then is stopped. The simulate commands must print a verdict with a saving.
# README.md's route table is checked against core/src/route.rs's ROUTES by
# `cargo test -p wattwise-core` (route::tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
work="$(mktemp -d)"
procs_tag=tests/readme
source "$root/tests/lib/procs.sh"
trap finish_work EXIT

# The commands: one per line of the sections' ```sh blocks, comments dropped.
mapfile -t commands < <(python3 - "$root/README.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
found = 0
for title in ("Install", "Quick start"):
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        sys.exit(f"tests/readme: README.md has no '## {title}' section")
    for block in re.findall(r"```sh\n(.*?)```", m.group(1), re.S):
        for line in block.splitlines():
            cmd = re.sub(r"\s+#.*$", "", line).strip()
            if cmd and not cmd.startswith("#"):
                print(cmd)
                found += 1
if found < 4:
    sys.exit(f"tests/readme: only {found} commands in Install and Quick start")
PY
)
[ "${#commands[@]}" -ge 4 ] || { echo "tests/readme: no commands read from README.md" >&2; exit 1; }

# The fake NVML, loaded as tests/agent loads it.
cargo build -q -p fake-nvml
export WATTWISE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
export FAKE_NVML_STATE="$work/fake-nvml.json" FAKE_NVML_COUNT=2
export WATTWISE_STATE_DIR="$work/agent-state"

n=0
for cmd in "${commands[@]}"; do
    n=$((n + 1))
    echo "---- tests/readme: \$ $cmd"
    began=$(date +%s)
    if [[ "$cmd" == "make run"* ]]; then
        port="$(free_port)"
        start make-run bash -c "$cmd LISTEN=127.0.0.1:$port DB=$work/wattwise.db"
        wait_for "http://127.0.0.1:$port/healthz" make-run 1200
        page="$(curl -fsS "http://127.0.0.1:$port/")"
        [[ "$page" == *'<title>wattwise'* ]] || { echo "tests/readme: $cmd does not serve the page" >&2; exit 1; }
        stop_last
    else
        out="$work/out-$n.txt"
        if ! bash -c "$cmd" >"$out" 2>&1; then
            cat "$out" >&2
            echo "tests/readme: README command failed: $cmd" >&2
            exit 1
        fi
        tail -n 4 "$out"
        if [[ "$cmd" == *" simulate "* ]] && ! grep -q "wattwise's policy saves" "$out"; then
            echo "tests/readme: $cmd shows no saving" >&2
            exit 1
        fi
        if [[ "$cmd" == *"-- gpus"* ]] && ! grep -qi "fake" "$out"; then
            echo "tests/readme: $cmd did not list the fake NVML's GPUs" >&2
            exit 1
        fi
    fi
    echo "---- tests/readme: ok in $(($(date +%s) - began)) s"
done
echo "tests/readme: passed (${#commands[@]} README commands)"
