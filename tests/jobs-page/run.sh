#!/usr/bin/env bash
# End-to-end test of the page's jobs view (#jobs) in headless Chromium against a
# real endpoint: wattwise-server (SQLite, with a bearer token) serving web/dist
# beside the API, on 127.0.0.1 on a free port, in its own process group. The test
# (tests/browser/jobs.test.mjs, beside tests/browser's playwright-core) makes the jobs itself over HTTP, as clients do. Installs what a
# fresh machine lacks (Debian's chromium; playwright-core from tests/browser's lock
# file), builds the page (web/build.sh) and the server. Screenshots go to
# $ARTIFACTS_DIR (default: artifacts/). Exits non-zero on any failure.
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

bash web/build.sh
cargo build -p wattwise-lambda --bin wattwise-server
token="jobs-page-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
port="$(free_port)"
WATTWISE_TOKEN="$token" start server "$CARGO_TARGET_DIR/debug/wattwise-server" \
  --listen "127.0.0.1:$port" --db "$work/wattwise.db" --web "$root/web/dist"
wait_for "http://127.0.0.1:$port/healthz" server 30

BASE_URL="http://127.0.0.1:$port" TOKEN="$token" ARTIFACTS_DIR="$artifacts" \
  node --test --test-concurrency=1 --test-reporter=spec "$root/tests/browser/jobs.test.mjs"
echo "tests/jobs-page: passed; screenshots in $artifacts"
