#!/usr/bin/env bash
# End-to-end test of the what-if page in headless Chromium.
#
# Installs what a fresh machine lacks (Debian's chromium; playwright-core, without
# its browser download), builds the page (web/build.sh) and the `wattwise` command
# line (the reference numbers), serves web/dist on 127.0.0.1 on a free port in its
# own process group (SERVER=wattwise-server: the local endpoint; SERVER=wattwise-serve:
# the agent's `wattwise serve` with the page compiled in), and runs the Node test.
# Screenshots and the benchmark figures
# go to $ARTIFACTS_DIR (default: artifacts/). Exits non-zero on any failure.
#
# The page runs on the Zeus traces built into the core; the upload tests upload the
# product's own copy of them (core/traces), as a user would upload their files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
source "$root/tests/lib/page_env.sh"
work="$artifacts" # where start (tests/lib/procs.sh) writes the server's log: $artifacts/server.log
procs_tag=tests/browser
traces="$root/core/traces"
if [ ! -f "$traces/summary_train.csv" ]; then
  echo "tests/browser: the Zeus traces are not in $traces" >&2
  exit 1
fi

# Chromium and playwright-core.
bash "$root/tests/browser/setup.sh"

# The page, and the reference command line.
bash web/build.sh
cargo build -p wattwise-agent --bin wattwise
bin="$CARGO_TARGET_DIR/debug/wattwise"

# Serve web/dist on a free port, in its own process group, killed by group on exit:
# with a small static server, or (SERVER=wattwise-server) with the local endpoint,
# which serves the page at / beside the API, or (SERVER=wattwise-serve) with the
# agent's `wattwise serve`, the page compiled into the binary (as the wheel's is).
port="$(free_port)"
if [ "${SERVER:-static}" = wattwise-serve ]; then
  WATTWISE_WEB_DIST="$root/web/dist" cargo build -p wattwise-agent --bin wattwise
  db="$(mktemp -d)/wattwise.db"
  start server "$bin" serve --listen "127.0.0.1:$port" --db "$db"
elif [ "${SERVER:-static}" = wattwise-server ]; then
  cargo build -p wattwise-lambda --bin wattwise-server
  db="$(mktemp -d)/wattwise.db"
  start server "$CARGO_TARGET_DIR/debug/wattwise-server" --listen "127.0.0.1:$port" --db "$db" --web "$root/web/dist"
else
  start server python3 -m http.server --bind 127.0.0.1 --directory "$root/web/dist" "$port"
fi
trap stop_all EXIT
wait_for "http://127.0.0.1:$port/" server 30

BASE_URL="http://127.0.0.1:$port/" WATTWISE_BIN="$bin" TRACES="$traces" ARTIFACTS_DIR="$artifacts" \
  DIST="$root/web/dist" node --test --test-concurrency=1 --test-reporter=spec "$here/bindings.test.mjs" "$here/e2e.test.mjs"
echo "tests/browser: passed; screenshots and browser-bench.json in $artifacts"
