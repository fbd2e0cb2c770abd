#!/usr/bin/env bash
# End-to-end test of the page's jobs view (#jobs) in headless Chromium against a
# real endpoint: wattwise-server (SQLite) serving web/dist beside the API, on
# 127.0.0.1 on a free port, in its own process group. Real clients populate it
# first (tests/jobs-page/clients.py): Zeus's own Python client (zeus==0.16.0, from
# tests/endpoint/setup.sh's venv) for two jobs, and the agent (`wattwise run` on the
# fake NVML) for one job with a power profile. Zeus's client sends no token, so the
# server runs without one for them, then again on the same database with a bearer
# token for the page. The test (tests/browser/jobs.test.mjs, beside tests/browser's
# playwright-core) adds jobs over HTTP as a training script would, runs the agent
# again while the page shows its job, and checks every number against the API.
# Installs what a fresh machine lacks (Debian's chromium; playwright-core from
# tests/browser's lock file; the endpoint venv), builds the page (web/build.sh), the
# server, the agent and the fake NVML. Screenshots go to $ARTIFACTS_DIR (default:
# artifacts/; the Worker's under worker-<mode>/). Exits non-zero on any failure.
#
# The same test then runs against the Worker under `wrangler dev` (wasm/wrangler.toml
# with its [assets]: the page as static assets, the API routes to the Worker), once
# per store mode (Workers KV, Durable Objects), populated the same way.
# Settings: WATTWISE_JOBS_PAGE_HOSTS (default "server worker-kv worker-durable_object"),
# CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
source "$root/tests/lib/page_env.sh"
source "$root/tests/lib/worker.sh"
hosts="${WATTWISE_JOBS_PAGE_HOSTS:-server worker-kv worker-durable_object}"
work="$(mktemp -d)"
procs_tag=tests/jobs-page
trap finish_work EXIT

# Chromium and playwright-core.
bash "$root/tests/browser/setup.sh"

# Zeus 0.16.0's client (and the endpoint suite's other tools); wrangler.
zeus_venv="$(bash "$root/tests/endpoint/setup.sh" | tail -n 1)"
[ "$hosts" = server ] || bash "$root/tests/worker/setup.sh" >/dev/null

bash web/build.sh
cargo build -p wattwise-lambda --bin wattwise-server
cargo build -p wattwise-agent -p fake-nvml
export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
export FAKE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
export WATTWISE_SERVER_BIN="$CARGO_TARGET_DIR/debug/wattwise-server"

# populate URL: the real clients make their jobs (Zeus's client sends no token, so
# the host runs without one now); sets agent_job. Its id has a `:`, which the agent
# and the page send percent-encoded (`%3A`) in paths (issue 26).
populate() {
    agent_job="agentpage:$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
    python3 "$here/clients.py" zeus "$1" "$zeus_venv/bin/python" "$work/clients.json"
    python3 "$here/clients.py" agent "$1" "$agent_job"
}

# page_test URL TOKEN SHOTS: the Playwright test against the host at URL.
page_test() {
    mkdir -p "$3"
    BASE_URL="$1" TOKEN="$2" ARTIFACTS_DIR="$3" \
      CLIENT_JOBS="$work/clients.json" AGENT_JOB="$agent_job" CLIENTS="$here/clients.py" \
      node --test --test-concurrency=1 --test-reporter=spec "$root/tests/browser/jobs.test.mjs"
}

token="jobs-page-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

for host in $hosts; do
    echo "---- tests/jobs-page: $host ----"
    began=$(date +%s)
    port="$(free_port)"
    url="http://127.0.0.1:$port"
    if [ "$host" = server ]; then
        start server-open "$WATTWISE_SERVER_BIN" --listen "127.0.0.1:$port" --db "$work/wattwise.db"
        wait_for "$url/healthz" server-open 30
        populate "$url"
        stop_last
        WATTWISE_TOKEN="$token" start server "$WATTWISE_SERVER_BIN" \
          --listen "127.0.0.1:$port" --db "$work/wattwise.db" --web "$root/web/dist"
        wait_for "$url/healthz" server 30
        page_test "$url" "$token" "$artifacts"
    else
        # The Worker serving the page as static assets, in one store mode; the same
        # data directory across the restart that adds the token.
        mode=${host#worker-}
        if [ ! -f "$work/wrangler.toml" ]; then
            bash wasm/build-worker.sh
            worker_config wasm/build/wrangler.jobs-page.toml assets
            touch "$work/wrangler.toml"
        fi
        start_worker "$host-open" build/wrangler.jobs-page.toml "$port" "$work/$host" "$mode"
        # The page is the Worker's static assets: / is its index.html.
        index="$(curl -fsS "$url/")"
        [[ "$index" == *'<title>'* ]] || { echo "tests/jobs-page: $host does not serve the page at /" >&2; exit 1; }
        populate "$url"
        stop_last
        start_worker "$host" build/wrangler.jobs-page.toml "$port" "$work/$host" "$mode" "$token"
        page_test "$url" "$token" "$artifacts/$host"
        stop_last
    fi
    echo "tests/jobs-page: $host passed in $(($(date +%s) - began)) s"
done
echo "tests/jobs-page: passed ($hosts); screenshots in $artifacts"
