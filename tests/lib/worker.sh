# shellcheck shell=bash
# The Worker under `wrangler dev` (local mode: miniflare and workerd) for the test
# scripts, shared by tests/worker/run.sh and tests/jobs-page/run.sh. Source it after
# tests/lib/procs.sh (it uses start_in and groups). The caller builds the Worker
# first (wasm/build-worker.sh) and installs wrangler (tests/worker/setup.sh).

# worker_config OUT [assets]: writes OUT (a path under wasm/build/) from
# wasm/wrangler.toml without its [build] section (wrangler then runs no build and
# watches no files, so nothing reloads the Worker in the middle of a test), with its
# paths made relative to wasm/build/. The [assets] section (the page, web/dist) is
# kept only when the second argument is "assets"; the page must be built then.
worker_config() {
    local out=$1 keep=${2:-}
    awk -v keep="$keep" '/^\[/ { skip = ($0 == "[build]" || ($0 == "[assets]" && keep != "assets")) } !skip' \
        wasm/wrangler.toml \
        | sed -e 's|^main = "worker.mjs"|main = "../worker.mjs"|' \
              -e 's|^directory = "../web/dist"|directory = "../../web/dist"|' >"$out"
    grep -q '^main = "../worker.mjs"' "$out"
    if [ "$keep" = assets ]; then
        grep -q '^directory = "../../web/dist"' "$out"
        [ -f web/dist/index.html ] || { echo "worker.sh: web/dist is not built (web/build.sh)" >&2; return 1; }
    fi
}

# start_worker NAME CONFIG PORT STATE_DIR MODE [TOKEN]: `wrangler dev -c CONFIG`
# (relative to wasm/) on 127.0.0.1:PORT in a process group of its own, keeping its
# data in STATE_DIR, with WATTWISE_STORE=MODE and, when given, WATTWISE_TOKEN=TOKEN;
# waits (up to 120 s) for /healthz. Sets worker_started_ms and worker_up_ms (launch
# and first 200, Unix ms). On failure prints the end of $work/NAME.log and fails.
start_worker() {
    local name=$1 config=$2 port=$3 state=$4 mode=$5 token=${6:-} i
    local -a vars=(--var "WATTWISE_STORE:$mode")
    [ -n "$token" ] && vars+=(--var "WATTWISE_TOKEN:$token")
    export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
    worker_started_ms=$(date +%s%3N)
    worker_up_ms=""
    start_in wasm "$name" "$root/tests/worker/node_modules/.bin/wrangler" dev -c "$config" \
        --ip 127.0.0.1 --port "$port" --inspector-port "$(free_port)" --persist-to "$state" \
        --show-interactive-dev-session=false "${vars[@]}"
    for ((i = 0; i < 600; i++)); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
            worker_up_ms=$(date +%s%3N)
            return 0
        fi
        kill -0 "${groups[-1]}" 2>/dev/null || break
        sleep 0.2
    done
    echo "${procs_tag:-tests}: wrangler dev did not come up on port $port; its log ($work/$name.log):" >&2
    tail -n 60 "$work/$name.log" >&2 || true
    return 1
}
