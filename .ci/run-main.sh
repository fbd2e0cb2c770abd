#!/usr/bin/env bash
# The main job: build the what-if page and start the local endpoint (SQLite) serving it.
# Usage: run-main.sh LISTEN DB
set -euo pipefail
cd "$(dirname "$0")/.."
listen="${1:-127.0.0.1:8080}"
db="${2:-wattwise.db}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"

bash .ci/setup.sh
bash web/build.sh
cargo build --release -p wattwise-lambda --bin wattwise-server
echo "wattwise: endpoint and what-if page on http://$listen/ (state in $db)"
exec "$CARGO_TARGET_DIR/release/wattwise-server" --listen "$listen" --db "$db" --web web/dist
