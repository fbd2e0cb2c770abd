#!/usr/bin/env bash
# The Worker's size and cold-start figures (for BENCHMARKS.md, section "Worker"):
#   - wasm/build/worker/index_bg.wasm raw and gzip -9 bytes, the JS glue likewise,
#     and wrangler's own upload figure (`wrangler deploy --dry-run`);
#   - the no-op rebuild wrangler runs first (wasm/build-worker.sh with cargo up to date);
#   - per store mode, RUNS cold starts of `wrangler dev` (local: miniflare + workerd,
#     127.0.0.1, fresh state dir, own process group): launch to the first 200 on
#     /healthz, then the first request that reaches the store (GET /jobs/<unknown>,
#     404), then the median of 20 warm ones.
# Settings: RUNS (default 5), CARGO_TARGET_DIR (default ~/.cache/wattwise-target-worker).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target-worker}"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
runs="${RUNS:-5}"

venv="$(bash tests/worker/setup.sh | tail -n 1)"
py="$venv/bin/python"
wrangler="$root/tests/worker/node_modules/.bin/wrangler"
source tests/lib/procs.sh
work="$(mktemp -d)"
trap finish_work EXIT
now_ms() { date +%s%3N; }
median() { "$py" -c 'import statistics, sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 1))' "$@"; }

bash wasm/build-worker.sh 2>/dev/null
out=wasm/build/worker
# wrangler.toml without its [build] section (built above): wrangler then runs no
# build and watches no files, so nothing reloads the Worker in the middle of a test.
config=wasm/build/wrangler.test.toml
awk '/^\[/ { skip = ($0 == "[build]") } !skip' wasm/wrangler.toml \
    | sed 's|^main = "worker.mjs"|main = "../worker.mjs"|' >"$config"
grep -q '^main = "../worker.mjs"' "$config"
echo "size: index_bg.wasm $(wc -c <"$out/index_bg.wasm") bytes raw, $(gzip -9 -c "$out/index_bg.wasm" | wc -c) gzip -9"
echo "size: index.js $(wc -c <"$out/index.js") bytes raw, $(gzip -9 -c "$out/index.js" | wc -c) gzip -9"
(cd wasm && "$wrangler" deploy --dry-run --outdir "$work/dry" 2>&1 | grep "Total Upload" | sed 's/^/size: wrangler /')

t0=$(now_ms)
bash wasm/build-worker.sh 2>/dev/null
echo "build: no-op rebuild (cargo up to date + wasm-bindgen) $(($(now_ms) - t0)) ms"

for mode in kv durable_object; do
    starts=() firsts=() warms=()
    for ((run = 1; run <= runs; run++)); do
        port=$(free_port "$py")
        inspector=$(free_port "$py")
        started=$(now_ms)
        start_in wasm "wrangler-$mode-$run" "$wrangler" dev -c build/wrangler.test.toml --ip 127.0.0.1 --port "$port" --inspector-port "$inspector" \
            --persist-to "$work/state-$mode-$run" --show-interactive-dev-session=false \
            --var "WATTWISE_STORE:$mode"
        up=""
        for ((i = 0; i < 1200; i++)); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
                up=$(now_ms)
                break
            fi
            sleep 0.05
        done
        [ -n "$up" ] || { tail -n 40 "$work/wrangler-$mode-$run.log" >&2; exit 1; }
        starts+=("$((up - started))")
        firsts+=("$(curl -sS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/jobs/probe-$run" | "$py" -c 'import sys; print(float(sys.stdin.read()) * 1000)')")
        w=()
        for ((i = 0; i < 20; i++)); do
            w+=("$(curl -sS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port/jobs/probe-$run" | "$py" -c 'import sys; print(float(sys.stdin.read()) * 1000)')")
        done
        warms+=("$(median "${w[@]}")")
        stop_last
    done
    echo "cold start ($mode, $runs runs): launch to first 200 on /healthz median $(median "${starts[@]}") ms (runs: ${starts[*]});" \
        "first store request median $(median "${firsts[@]}") ms; warm store request median $(median "${warms[@]}") ms"
done
