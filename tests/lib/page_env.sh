# shellcheck shell=bash
# What the page suites (tests/browser, tests/jobs-page) set up first: the cargo
# target directory, no browser download (Chromium comes from the system), the
# artifacts folder ($artifacts, absolute; ARTIFACTS_DIR or ./artifacts) and the
# process helpers (tests/lib/procs.sh). Source it with $root set to the repository.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
artifacts="${ARTIFACTS_DIR:-artifacts}"
mkdir -p "$artifacts"
artifacts="$(cd "$artifacts" && pwd)"
# shellcheck source=tests/lib/procs.sh
source "$root/tests/lib/procs.sh"
