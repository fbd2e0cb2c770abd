#!/usr/bin/env bash
# Side-by-side with Zeus's own (legacy) trace-driven simulator, zeus==0.16.0.
#
#   tests/zeus-sim/run.sh [compare] every workload x GPU pair, 50 recurrences, seeds 1-5,
#                                   eta 0.5, beta 2.0: Zeus's and wattwise's mean cumulative
#                                   cost as a markdown table; fails if any pair is more than 5% off.
#   tests/zeus-sim/run.sh time      Zeus's simulate_one_job wall time, librispeech on V100,
#                                   50 and 210 recurrences (compare with `cargo bench --bench simulate`).
#
# Installs what is missing, once: a venv with zeus==0.16.0 under ~/.cache (override with
# ZEUS_VENV). Traces: the copy the product carries, core/traces (override with TRACES).
# SEEDS=N compares over seeds 1..N instead of 1..5.
set -euo pipefail

mode="${1:-compare}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
traces="${TRACES:-$root/core/traces}"
venv="${ZEUS_VENV:-$HOME/.cache/wattwise-zeus-venv}"
nseeds="${SEEDS:-5}"

if [ ! -f "$traces/summary_train.csv" ]; then
    echo "zeus-sim: no traces at $traces (set TRACES)" >&2
    exit 1
fi

if ! "$venv/bin/python" -c 'import zeus._legacy.simulate' 2>/dev/null; then
    echo "zeus-sim: installing zeus==0.16.0 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'zeus==0.16.0'
fi
py="$venv/bin/python"

case "$mode" in
time)
    for r in 50 210; do
        "$py" "$here/zeus_sim.py" time --traces "$traces" --recurrences "$r" --repeat 10
    done
    ;;
compare)
    target="${CARGO_TARGET_DIR:-$root/target}"
    # The debug build is enough (120 simulations take well under a second) and reuses
    # what `cargo test` built.
    (cd "$root" && cargo build --quiet -p wattwise-agent)
    bin="$target/debug/wattwise"
    zeus_json="$(mktemp)"
    ours_json="$(mktemp)"
    trap 'rm -f "$zeus_json" "$ours_json"' EXIT
    "$py" "$here/zeus_sim.py" compare --traces "$traces" --seeds "$(seq -s, 1 "$nseeds")" --recurrences 50 --eta 0.5 --beta 2.0 \
        >"$zeus_json" 2>/dev/null
    echo "{" >"$ours_json"
    first=1
    for gpu in a40 v100 p100 rtx6000; do
        for dataset in cifar100 imagenet librispeech movielens-1m squad sentiment140; do
            mean="$("$bin" simulate --traces "$traces" --gpu "$gpu" --dataset "$dataset" \
                --recurrences 50 --seed "1-$nseeds" --eta 0.5 --beta 2.0 --format csv |
                awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "cum_cost") c = i; next }
                         c && NF >= c { s += $c; n++ } END { if (!n) exit 1; printf "%.6f", s / n }')"
            [ "$first" = 1 ] || echo "," >>"$ours_json"
            first=0
            printf '"%s/%s": %s' "$dataset" "$gpu" "$mean" >>"$ours_json"
        done
    done
    echo "}" >>"$ours_json"
    "$py" - "$zeus_json" "$ours_json" <<'PY'
import json, sys
zeus = json.load(open(sys.argv[1]))
ours = json.load(open(sys.argv[2]))
print("| workload / GPU | Zeus mean cum. cost (MJ) | wattwise mean cum. cost (MJ) | difference |")
print("| --- | ---: | ---: | ---: |")
bad, diffs = [], []
for key, seeds in zeus.items():
    costs = [v for v in seeds.values() if isinstance(v, float)]
    if len(costs) != len(seeds):
        print(f"| {key} | Zeus failed: {seeds} | | |")
        bad.append(key)
        continue
    z = sum(costs) / len(costs)
    w = ours[key]
    d = w / z - 1
    diffs.append(abs(d))
    print(f"| {key} | {z / 1e6:,.3f} | {w / 1e6:,.3f} | {d * 100:+.2f}% |")
    if abs(d) > 0.05:
        bad.append(key)
print()
print(f"{len(diffs)} pairs, mean |difference| {sum(diffs) / len(diffs) * 100:.2f}%, max {max(diffs) * 100:.2f}%")
if bad:
    print(f"more than 5% off (or failed): {bad}", file=sys.stderr)
    sys.exit(1)
PY
    ;;
*)
    echo "usage: $0 compare|time" >&2
    exit 2
    ;;
esac
