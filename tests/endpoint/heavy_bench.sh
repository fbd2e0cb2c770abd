#!/usr/bin/env bash
# Heavy reads benchmark (not a test; issue 26): wattwise-server (release, SQLite file)
# with a job of 500,000 archived trials and 200 large job documents, under 64
# concurrent clients exporting that job's trials and listing 200 jobs a page, while
# /healthz is timed and the server's memory sampled (tests/endpoint/heavy_bench.py).
# The server binds 127.0.0.1 on a free port in its own process group, killed by group.
# BENCHMARKS.md records the figures.
# Settings: SERVER (a wattwise-server binary to measure instead of this checkout's
# release build, e.g. an older build for a before/after pair), TRIALS, DOCS,
# CLIENTS, SECONDS_LOAD (default 20), MAX_RSS_MB (the bench kills a server above it; default 3072).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
source tests/endpoint/env.sh
procs_tag=heavy-bench
trap finish_work EXIT
server="${SERVER:-}"
if [ -z "$server" ]; then
    cargo build --release -p wattwise-lambda --bin wattwise-server
    server="$CARGO_TARGET_DIR/release/wattwise-server"
fi
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr); server: $server"
port=$(free_port "$py")
RUST_LOG=warn start server "$server" --listen "127.0.0.1:$port" --db "$work/heavy.db"
wait_for "http://127.0.0.1:$port/healthz" server 30
"$py" tests/endpoint/heavy_bench.py "http://127.0.0.1:$port" "$work/heavy.db" "${groups[-1]}" \
    --trials "${TRIALS:-500000}" --docs "${DOCS:-200}" --clients "${CLIENTS:-64}" \
    --seconds "${SECONDS_LOAD:-20}" --max-rss-mb "${MAX_RSS_MB:-3072}"
