#!/usr/bin/env bash
# Installs what the Worker tests need, only when missing (idempotent):
#   - wrangler 4.86.0 (with its miniflare and workerd) from tests/worker/package-lock.json (npm ci);
#   - a Python venv (default ~/.cache/wattwise-worker-venv, override WATTWISE_WORKER_VENV)
#     with pytest and requests for the conformance suite.
# The Rust side (wasm32 target, wasm-bindgen-cli 0.2.130) is wasm/build-worker.sh's.
# Prints the venv path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
want_wrangler=4.86.0

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "worker setup: installing node and npm" >&2
    apt-get update -qq >&2 && apt-get install -y -qq nodejs npm >&2
fi
have="$(cd "$here" && node_modules/.bin/wrangler --version 2>/dev/null | tail -n 1 || true)"
if [ "$have" != "$want_wrangler" ]; then
    echo "worker setup: npm ci (wrangler $want_wrangler)" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
[ "$(cd "$here" && node_modules/.bin/wrangler --version 2>/dev/null | tail -n 1)" = "$want_wrangler" ]

venv="${WATTWISE_WORKER_VENV:-$HOME/.cache/wattwise-worker-venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "worker setup: creating $venv" >&2
    python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import pytest, requests' >/dev/null 2>&1; then
    echo "worker setup: installing pytest and requests" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check pytest requests >&2
fi
"$venv/bin/python" -c 'import pytest, requests'
echo "$venv"
