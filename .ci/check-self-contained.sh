#!/usr/bin/env bash
# The product carries its own data (core/traces): no tracked file may read the
# folder of seed documents and traces that sits beside the development checkout
# (a user's clone has no such folder). Docs (.md) may mention it; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
outside='\.\./(\.\./)*shared'
hits=$(git ls-files -z | grep -zvE '\.(md|lock)$' | xargs -0 grep -nE "$outside" -- 2>/dev/null || true)
if [ -n "$hits" ]; then
  echo "$hits"
  echo "these tracked files read a folder outside the repository (see above); use core/traces" >&2
  exit 1
fi
echo "no tracked file reads outside the repository"
