#!/usr/bin/env bash
# The job list benchmark (not a test): wattwise-server (release, SQLite file) with
# 100 and then 10,000 jobs; GET /jobs?limit=50 latency over pages from the first
# to the last (tests/endpoint/list_bench.py). Servers bind 127.0.0.1 on a free port
# in their own process group and are killed by group. BENCHMARKS.md records the
# figures. Settings: REQUESTS (timed list requests per size, default 2000).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
venv="$(bash tests/endpoint/setup.sh | tail -n 1)"
py="$venv/bin/python"
source tests/lib/procs.sh
work="$(mktemp -d)"
procs_tag=list-bench
trap finish_work EXIT
cargo build --release -p wattwise-lambda --bin wattwise-server
for jobs in 100 10000; do
    port=$(free_port "$py")
    start server "$CARGO_TARGET_DIR/release/wattwise-server" --listen "127.0.0.1:$port" --db "$work/list-$jobs.db"
    wait_for "http://127.0.0.1:$port/healthz" server 30
    "$py" tests/endpoint/list_bench.py "http://127.0.0.1:$port" "$jobs" "${REQUESTS:-2000}"
    stop_last
done
