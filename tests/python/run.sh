#!/usr/bin/env bash
# The `wattwise` Python package (agent/python) and the agent's Prometheus metrics:
#   1. the package's unit tests (pytest) and type check (mypy --strict), on the
#      package as pip installs it;
#   2. tests/python/e2e.py: real PyTorch, Hugging Face Trainer and Lightning runs on
#      the CPU under `wattwise run` (fake NVML, real wattwise-server), a real
#      Prometheus scraping the agent during a run, and real torchrun starting the
#      agent as its worker on two "nodes".
#
# Installs what a fresh Debian machine lacks: Debian's python3-torch (CPU PyTorch
# 1.13 for /usr/bin/python3), prometheus and python3-venv through apt-get, then a
# virtual environment made by /usr/bin/python3 with --system-site-packages (so
# Debian's torch and numpy are the ones used) holding the pinned packages of
# tests/python/requirements.txt (kept in ~/.cache/wattwise-python, rebuilt when that
# file changes). Exits non-zero on any failure.
#
# Settings: CARGO_TARGET_DIR (default ~/.cache/wattwise-target); arguments select
# e2e tests by name substring (e.g. `tests/python/run.sh prometheus`).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
tag="tests/python"

need=()
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || need+=(python3-torch)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tag: needs Debian's ${need[*]} (apt-get not found)" >&2
        exit 1
    fi
    echo "$tag: installing ${need[*]} with apt-get"
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
fi

req=tests/python/requirements.txt
fix=tests/python/torch13_py311_fix.py
key=$(cat "$req" "$fix" | sha256sum | cut -c1-16)
venv="$HOME/.cache/wattwise-python/venv-$key"
if [ ! -f "$venv/.complete" ]; then
    echo "$tag: creating $venv"
    rm -rf "$venv"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$req"
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp "$fix" "$site/"
    echo "import torch13_py311_fix" >"$site/torch13_py311_fix.pth"
    touch "$venv/.complete"
fi
py="$venv/bin/python"

work=$(mktemp -d /tmp/wattwise-python-XXXXXX)
trap 'rm -rf "$work"' EXIT

# The package as a user installs it (a copy, so the build leaves nothing in the
# tree; the venv's setuptools builds it, no network).
cp -r agent/python "$work/package"
rm -rf "$work/package/build" "$work/package/src/"*.egg-info
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall "$work/package"

echo "$tag: unit tests"
(cd "$work/package" && "$py" -m pytest -q -p no:cacheprovider tests)
echo "$tag: type check"
(cd "$work/package" && "$py" -m mypy --cache-dir "$work/mypy-cache")

cargo build -q -p wattwise-agent -p fake-nvml
cargo build -q -p wattwise-lambda --bin wattwise-server

export WATTWISE_BIN="$CARGO_TARGET_DIR/debug/wattwise"
export FAKE_NVML_LIB="$CARGO_TARGET_DIR/debug/libnvidia_ml.so"
export WATTWISE_SERVER_BIN="$CARGO_TARGET_DIR/debug/wattwise-server"
echo "$tag: training runs under the agent, Prometheus"
"$py" tests/python/e2e.py "$@"
