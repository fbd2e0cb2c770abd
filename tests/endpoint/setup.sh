#!/usr/bin/env bash
# Installs what the endpoint tests need, only when it is missing (idempotent):
# a Python venv (default ~/.cache/wattwise-endpoint-venv, override with
# WATTWISE_ENDPOINT_VENV) holding cargo-lambda 1.8.6, moto's server, the AWS CLI, pytest, requests,
# httpx and Zeus 0.16.0 with its batch size optimizer server (for the Zeus-client
# test and the side-by-side benchmark). Prints the venv path on its last line.
set -euo pipefail

venv="${WATTWISE_ENDPOINT_VENV:-$HOME/.cache/wattwise-endpoint-venv}"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
    echo "endpoint setup: creating $venv" >&2
    python3 -m venv "$venv"
fi

# Each entry: a pip requirement, then the check that says it is there.
need=()
check() { "$py" -c "$1" >/dev/null 2>&1; }
check 'import pytest' || need+=("pytest")
check 'import requests' || need+=("requests")
check 'import httpx' || need+=("httpx")
check 'import moto.server, flask, flask_cors' || need+=("moto[server,dynamodb]")
# The AWS CLI runs lambda/README.md's create-table command against moto.
[ -x "$venv/bin/aws" ] || need+=("awscli")
# cargo-lambda pinned: 1.9.x's emulator drops about 1% of function URL responses
# (answers 500 after the function has responded), which breaks a long suite.
cargo_lambda_version=1.8.6
"$venv/bin/cargo-lambda" lambda --version 2>/dev/null | grep -q "^cargo-lambda $cargo_lambda_version " \
    || need+=("cargo-lambda==$cargo_lambda_version")
check 'import zeus, sqlalchemy, fastapi, uvicorn, dotenv; assert zeus.__version__ == "0.16.0"' \
    || need+=("zeus[bso-server]==0.16.0" "uvicorn")
# Zeus's server runs SQLAlchemy's asyncio layer on SQLite: aiosqlite and greenlet.
check 'import aiosqlite, greenlet' || need+=("aiosqlite" "greenlet")

if [ "${#need[@]}" -gt 0 ]; then
    echo "endpoint setup: installing ${need[*]}" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${need[@]}"
fi

# Every check must pass now.
check 'import pytest, requests, httpx, moto.server, flask, flask_cors, zeus, sqlalchemy, fastapi, uvicorn, aiosqlite, greenlet'
"$venv/bin/cargo-lambda" lambda --version | grep -q "^cargo-lambda $cargo_lambda_version "
"$venv/bin/aws" --version >/dev/null
echo "$venv"
