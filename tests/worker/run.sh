#!/usr/bin/env bash
# The Worker's tests against the real runtime: `wrangler dev` (local mode: miniflare
# and workerd, on 127.0.0.1, free ports, its own process group, killed by group at
# the end), once per store mode:
#   1. WATTWISE_STORE=kv             (Workers KV, per-job locks in the isolate)
#   2. WATTWISE_STORE=durable_object (one Durable Object per job)
# Each time: the shared conformance suite (tests/conformance, with a bearer token)
# tests/worker/test_concurrent_reports.py (concurrent reports for one job, none
# lost), tests/worker/test_worker_routes.py (the Durable Object mode's routing) and
# tests/worker/test_hostile_documents.py (10,000 hostile documents written and read
# back through the store, every job deleted). Prints each start's cold-start figures (launch to first 200 on /healthz,
# the first API request's latency).
# First, a test build of the Worker (feature store-contract) runs the core's store
# contract suite against each store mode from inside workerd (POST /__store_contract).
# Installs what is missing first (tests/worker/setup.sh, wasm/build-worker.sh).
# Exits non-zero on any failure.
#
# Settings: CARGO_TARGET_DIR (default ~/.cache/wattwise-target-worker),
# WATTWISE_TEST_CONCURRENCY_REQUESTS (requests per client in the suite's 32-client
# test, default 100 here), WATTWISE_WORKER_MODES (default "kv durable_object").
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target-worker}"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
export WATTWISE_TEST_CONCURRENCY_REQUESTS="${WATTWISE_TEST_CONCURRENCY_REQUESTS:-100}"
modes="${WATTWISE_WORKER_MODES:-kv durable_object}"

venv="$(bash tests/worker/setup.sh | tail -n 1)"
py="$venv/bin/python"

source tests/lib/procs.sh
source tests/lib/worker.sh
work="$(mktemp -d)"
log=""
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -n "$log" ] && [ -f "$log" ]; then
        echo "worker: failed; the end of wrangler's log ($log):" >&2
        grep -v '^\[wrangler:info\] [A-Z]* /' "$log" | tail -n 40 >&2 || true
    fi
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT

stored() { find "$1" -name '*.sqlite' ! -name metadata.sqlite 2>/dev/null | wc -l; }
step() { printf '\n---- worker: %s ----\n' "$*"; }

mkdir -p wasm/build
# wrangler.toml without [build] (built by the steps below) nor [assets] (the page:
# the jobs-page suite serves it from the Worker).
worker_config wasm/build/wrangler.test.toml
token="worker-$("$py" -c 'import secrets; print(secrets.token_hex(8))')"

# The store contract (the core's suite of the Store trait's rules) against each
# store mode, from inside workerd: a test build of the Worker with the
# `store-contract` feature answers POST /__store_contract. The Worker the other
# tests use is built next, without it.
step "store contract (a test build of the Worker)"
WATTWISE_WORKER_FEATURES=store-contract bash wasm/build-worker.sh
for mode in $modes; do
    port=$(free_port "$py")
    start_worker "contract-$mode" build/wrangler.test.toml "$port" "$work/contract-$mode" "$mode" "$token"
    answer=$(curl -fsS -X POST -H "Authorization: Bearer $token" \
        "http://127.0.0.1:$port/__store_contract?prefix=contract-$mode")
    echo "worker: store contract ($mode): $answer"
    "$py" -c 'import json, sys
a = json.loads(sys.argv[1])
sys.exit(0 if a["checks"] == 10 and a["violations"] == [] else 1)' "$answer" || {
        echo "worker: the $mode store broke the store contract" >&2
        exit 1
    }
    stop_last
done

step "build (wasm/build-worker.sh)"
bash wasm/build-worker.sh
# The Worker does not simulate: the traces built into the core stay out of its wasm.
if grep -qa 'cifar100,shufflenetv2,1024,adadelta' wasm/build/worker/index_bg.wasm; then
  echo "tests/worker: the Zeus traces are in the Worker's wasm (the core's builtin-traces feature is on)" >&2
  exit 1
fi
for mode in $modes; do
    step "wrangler dev, WATTWISE_STORE=$mode"
    port=$(free_port "$py")
    log="$work/wrangler-$mode.log"
    start_worker "wrangler-$mode" build/wrangler.test.toml "$port" "$work/state-$mode" "$mode" "$token"
    started=$worker_started_ms up=$worker_up_ms
    url="http://127.0.0.1:$port"
    # The first request that reaches the store (an unknown job: 404).
    first=$(curl -sS -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" \
        "$url/jobs/cold-start-probe")
    echo "worker: cold start ($mode): $((up - started)) ms from launch to first 200 on /healthz;" \
        "first store request $("$py" -c "print(round(float('$first') * 1000, 1))") ms"

    (cd tests/conformance && WATTWISE_TEST_URL="$url" WATTWISE_TEST_TOKEN="$token" \
        "$py" -m pytest -q -p no:cacheprovider -s)
    (cd tests/worker && WATTWISE_TEST_URL="$url" WATTWISE_TEST_TOKEN="$token" \
        "$py" -m pytest -q -p no:cacheprovider -s test_concurrent_reports.py test_worker_routes.py \
        test_hostile_documents.py)

    if grep -q "$token" "$log"; then
        echo "worker: wrangler's log shows the token" >&2
        exit 1
    fi
    # Each mode keeps its data where it says (miniflare makes one SQLite file per
    # KV namespace / Durable Object besides each store's metadata.sqlite).
    kv_files=$(stored "$work/state-$mode/v3/kv")
    do_files=$(stored "$work/state-$mode/v3/do")
    echo "worker: $mode mode left $kv_files KV namespace file(s), $do_files Durable Object file(s)"
    if [ "$mode" = kv ] && { [ "$kv_files" -eq 0 ] || [ "$do_files" -ne 0 ]; }; then
        echo "worker: kv mode did not keep its data in KV only" >&2
        exit 1
    fi
    # The Durable Object mode keeps jobs in their objects; KV holds the job list's
    # index keys (jobs-by-created/...) and nothing else.
    if [ "$mode" = durable_object ] && [ "$do_files" -eq 0 ]; then
        echo "worker: durable_object mode kept no data in Durable Objects" >&2
        exit 1
    fi
    if [ "$mode" = durable_object ] && ! "$py" - "$work/state-$mode/v3/kv" <<'PY'
import pathlib, sqlite3, sys
keys = []
for f in pathlib.Path(sys.argv[1]).rglob("*.sqlite"):
    if f.name == "metadata.sqlite":
        continue
    db = sqlite3.connect(f)
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        cols = [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]
        if "key" in cols:
            keys += [k for (k,) in db.execute(f'SELECT key FROM "{table}"')]
other = [k for k in keys if not k.startswith("jobs-by-created/")]
print(f"worker: durable_object mode: {len(keys)} KV key(s), {len(other)} outside the job index")
sys.exit(1 if other or not keys else 0)
PY
    then
        echo "worker: durable_object mode kept data in KV besides the job index" >&2
        exit 1
    fi
    stop_last
done

echo
echo "worker: all passed"
