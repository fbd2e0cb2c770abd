#!/usr/bin/env bash
# The endpoint benchmark (not a test): predict-and-report cycles over 256 jobs on
#   1. wattwise-server (release, SQLite file), and
#   2. Zeus's own batch size optimizer server (zeus[bso-server]==0.16.0 under uvicorn,
#      SQLite through aiosqlite),
# side by side with the same load generator (tests/endpoint/loadgen, one thread,
# keep-alive connections); then the Lambda function under `cargo lambda watch`
# (release) with DynamoDB on moto: its init time and per-request time.
# Every server binds 127.0.0.1 on a free port in its own process group and is
# killed by group. Prints the figures; BENCHMARKS.md records them.
#
# Settings: SECTIONS (default "wattwise zeus lambda"), CONCURRENCY (connections,
# default "1 4 16"), CYCLES (wattwise, default 20000), ZEUS_CYCLES (default 2000),
# WARMUP (cycles before timing, default 200), LAMBDA_CYCLES (default 300).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wattwise-target}"
concurrency="${CONCURRENCY:-1 4 16}"
cycles="${CYCLES:-20000}"
zeus_cycles="${ZEUS_CYCLES:-2000}"
warmup="${WARMUP:-200}"
lambda_cycles="${LAMBDA_CYCLES:-300}"
sections="${SECTIONS:-wattwise zeus lambda}"
want() { [[ " $sections " == *" $1 "* ]]; }

source tests/endpoint/env.sh
procs_tag=bench
trap finish_work EXIT

echo "== build (release)"
cargo build --release -p wattwise-lambda --bins
cargo build --release --manifest-path tests/endpoint/loadgen/Cargo.toml
loadgen="$CARGO_TARGET_DIR/release/wattwise-loadgen"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"

if want wattwise; then
echo "== wattwise-server (SQLite)"
port=$(free_port "$py")
RUST_LOG=warn start wattwise "$CARGO_TARGET_DIR/release/wattwise-server" \
    --listen "127.0.0.1:$port" --db "$work/wattwise.db"
wait_for "http://127.0.0.1:$port/healthz" wattwise 30
for c in $concurrency; do
    "$loadgen" --url "http://127.0.0.1:$port" --jobs 256 --concurrency "$c" \
        --cycles "$cycles" --warmup "$warmup" --label "wattwise c=$c"
done
stop_last
fi

if want zeus; then
echo "== Zeus's server (uvicorn, SQLite)"
port=$(free_port "$py")
"$py" - "$work/zeus.db" <<'EOF'
import sys
from sqlalchemy import create_engine
from zeus.optimizer.batch_size.server.database.schema import Base
Base.metadata.create_all(create_engine(f"sqlite:///{sys.argv[1]}"))
EOF
ZEUS_BSO_DATABASE_URL="sqlite+aiosqlite:///$work/zeus.db" ZEUS_BSO_LOG_LEVEL=WARN \
    start zeus "$py" -m uvicorn zeus.optimizer.batch_size.server.router:app \
    --host 127.0.0.1 --port "$port" --log-level warning --no-access-log
# Zeus has no health route: any answer from the app will do.
for ((i = 0; i < 150; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/docs" && break
    sleep 0.2
done
for c in $concurrency; do
    "$loadgen" --url "http://127.0.0.1:$port" --jobs 256 --concurrency "$c" \
        --cycles "$zeus_cycles" --warmup "$warmup" --label "zeus c=$c" || echo "zeus c=$c: errors (see above)"
done
stop_last
fi

want lambda || exit 0
echo "== Lambda function under cargo lambda watch (release), DynamoDB on moto"
start_moto
"$py" tests/endpoint/dynamo_table.py wattwise-bench
lambda_port=$(free_port "$py")
start_in lambda lambda cargo lambda watch -A 127.0.0.1 -P "$lambda_port" --ignore-changes --release \
    --bin bootstrap --env-var WATTWISE_TABLE=wattwise-bench \
    --env-var "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" --env-var "WATTWISE_LOG=wattwise_lambda=debug"
url="http://127.0.0.1:$lambda_port/lambda-url/bootstrap"
# The emulator starts the function on the first invocation: time that cold request.
sleep 2
t0=$(date +%s%N)
wait_for "$url/healthz" lambda 300
t1=$(date +%s%N)
echo "lambda: first request (cold: process start + init + answer) $(( (t1 - t0) / 1000000 )) ms"
grep -o '"init_micros":[0-9]*' "$work/lambda.log" | head -1 | sed 's/"init_micros":/lambda: init (main to ready: config, AWS SDK client) /; s/$/ us/'
"$loadgen" --url "$url" --jobs 16 --concurrency 1 --cycles "$lambda_cycles" --warmup 20 --label "lambda (emulator+moto) c=1"
cp "$work/lambda.log" "${LAMBDA_LOG_COPY:-/dev/null}" 2>/dev/null || true
"$py" - "$work/lambda.log" <<'EOF'
import json, sys
micros = {}
for line in open(sys.argv[1], errors="replace"):
    if not line.startswith("{"):
        continue
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    f = rec.get("fields", {})
    if f.get("message") == "request" and "micros" in f:
        path = f.get("path", "")
        route = "/report" if path == "/report" else ("/jobs/batch_size" if path == "/jobs/batch_size" else path)
        micros.setdefault(f"{f.get('method')} {route}", []).append(f["micros"])
for k, v in sorted(micros.items()):
    v.sort()
    p = lambda q: v[min(len(v) - 1, round((len(v) - 1) * q))] / 1000
    print(f"lambda handler time (inside the function, DynamoDB on moto) {k}: n={len(v)} p50 {p(0.5):.2f} ms p99 {p(0.99):.2f} ms")
EOF
