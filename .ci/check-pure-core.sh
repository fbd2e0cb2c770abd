#!/usr/bin/env bash
# The core must not touch a clock, a file, a socket or an OS random source.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='std::fs|std::net|SystemTime::now|Instant::now|thread_rng|getrandom|std::process|std::env::var'
if grep -rnE "$pattern" core/src; then
  echo "core/src uses I/O, a clock or OS randomness (see above)" >&2
  exit 1
fi
if grep -nE '^(getrandom|tokio|reqwest|rusqlite)' core/Cargo.toml; then
  echo "core/Cargo.toml depends on an I/O crate" >&2
  exit 1
fi
echo "core/src is free of I/O, clocks and OS randomness"
