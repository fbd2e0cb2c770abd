#!/usr/bin/env bash
# What the browser suites need and a fresh machine lacks: Debian's Chromium, and
# playwright-core from tests/browser's lock file (npm ci only when the installed
# tree is not the locked one; no browser download).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -x /usr/bin/chromium ]; then
  echo "tests/browser: installing chromium"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update
  $sudo_ apt-get install -y chromium
fi
cd "$here"
if ! cmp -s package-lock.json node_modules/.package-lock.stamp 2>/dev/null; then
  npm ci --no-audit --no-fund
  cp package-lock.json node_modules/.package-lock.stamp
fi
