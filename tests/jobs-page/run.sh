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
# artifacts/). Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
artifacts="${ARTIFACTS_DIR:-artifacts}"
mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"
source "$root/tests/lib/procs.sh"
work="$(mktemp -d)"
procs_tag=tests/jobs-page
cleanup() {
    local rc=$?
    stop_all
    if [ "$rc" -ne 0 ] && [ -f "$work/server.log" ]; then
        echo "---- tests/jobs-page: last lines of the server's log ----" >&2
        tail -n 30 "$work/server.log" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Chromium and playwright-core.
bash "$root/tests/browser/setup.sh"

# Zeus 0.16.0's client (and the endpoint suite's other tools).
zeus_venv="$(bash "$root/tests/endpoint/setup.sh" | tail -n 1)"

bash web/build.sh
cargo build -p wattwise-lambda --bin wattwise-server
cargo build -p wattwise-agent -p fake-nvml
export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
export FAKE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
export WATTWISE_SERVER_BIN="$CARGO_TARGET_DIR/debug/wattwise-server"
agent_job="agentpage-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"

# The real clients, against the server without a token (Zeus's client has none).
port="$(free_port)"
start server-open "$WATTWISE_SERVER_BIN" --listen "127.0.0.1:$port" --db "$work/wattwise.db"
wait_for "http://127.0.0.1:$port/healthz" server-open 30
python3 "$here/clients.py" zeus "http://127.0.0.1:$port" "$zeus_venv/bin/python" "$work/clients.json"
python3 "$here/clients.py" agent "http://127.0.0.1:$port" "$agent_job"
stop_last

token="jobs-page-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
port="$(free_port)"
WATTWISE_TOKEN="$token" start server "$WATTWISE_SERVER_BIN" \
  --listen "127.0.0.1:$port" --db "$work/wattwise.db" --web "$root/web/dist"
wait_for "http://127.0.0.1:$port/healthz" server 30

BASE_URL="http://127.0.0.1:$port" TOKEN="$token" ARTIFACTS_DIR="$artifacts" \
  CLIENT_JOBS="$work/clients.json" AGENT_JOB="$agent_job" CLIENTS="$here/clients.py" \
  node --test --test-concurrency=1 --test-reporter=spec "$root/tests/browser/jobs.test.mjs"
echo "tests/jobs-page: passed; screenshots in $artifacts"
