#!/usr/bin/env python3
"""Runs Zeus's own (legacy) trace-driven simulator, for comparison with wattwise.

Modes:
  compare  every Zeus workload x GPU pair, several seeds: the cumulative cost of each
           simulation, as JSON on stdout ({"dataset/gpu": {"seed": cost or error}}).
  time     wall time of simulate_one_job (librispeech on V100 by default), as JSON.

Policy: Zeus's default, PruningGTSBatchSizeOptimizer + JITPowerLimitOptimizer, with
the simulator and the optimizer seeded by the same seed (as Zeus's run_single.py does).
Run it with the Python that has zeus==0.16.0 (run.sh makes one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
from pathlib import Path

import pandas as pd
from zeus._legacy.job import Job
from zeus._legacy.policy.optimizer import JITPowerLimitOptimizer, PruningGTSBatchSizeOptimizer
from zeus._legacy.simulate import Simulator

WORKLOAD_SOURCE = Path(__file__).resolve().parents[2] / "core" / "src" / "sim" / "workload.rs"


def zeus_workloads() -> list[tuple[str, str, str, float, int, int]]:
    """(dataset, network, optimizer, target, max epochs, preferred default bs): the
    issue's table, read from the core's `ZEUS_WORKLOADS` so both simulators run
    the same workloads."""
    table = WORKLOAD_SOURCE.read_text().split("pub const ZEUS_WORKLOADS", 1)[-1].split("];", 1)[0]
    rows = re.findall(r'\("([^"]+)", "([^"]+)", "([^"]+)", ([0-9.]+), (\d+), (\d+)\)', table)
    if len(rows) != 6:
        sys.exit(f"zeus_sim: expected the 6 Zeus workloads in {WORKLOAD_SOURCE}, found {len(rows)}")
    return [(d, n, o, float(t), int(e), int(b)) for d, n, o, t, e, b in rows]


WORKLOADS = zeus_workloads()
GPUS = ["a40", "v100", "p100", "rtx6000"]


def load(traces: str, gpu: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(f"{traces}/summary_train.csv"), pd.read_csv(f"{traces}/summary_power_{gpu}.csv")


def make_job(train: pd.DataFrame, power: pd.DataFrame, w) -> Job:
    dataset, network, optimizer, target, max_epochs, default_bs = w
    merged = train.merge(power, how="inner")
    sizes = merged.loc[
        (merged.dataset == dataset) & (merged.network == network) & (merged.optimizer == optimizer)
    ].batch_size.unique()
    # The preferred default batch size, capped at the largest the GPU's trace has.
    return Job(dataset, network, optimizer, target, max_epochs, int(min(default_bs, max(sizes))))


def simulator(train, power, seed):
    return Simulator(
        train,
        power,
        PruningGTSBatchSizeOptimizer(seed=seed, verbose=False),
        JITPowerLimitOptimizer(verbose=False),
        seed=seed,
        verbose=False,
    )


def simulate(train, power, job, seed, recurrences, eta, beta):
    sim = simulator(train, power, seed)
    # The legacy simulator prints a line for runs that cannot afford one epoch even when quiet.
    with contextlib.redirect_stdout(io.StringIO()):
        return sim, sim.simulate_one_job(job, recurrences, beta, eta)


def cumulative_cost(sim, history, eta) -> float:
    max_power = sim.df.power_limit.max().item()
    return float(sum(eta * h.energy + (1 - eta) * max_power * h.time for h in history))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["compare", "time"])
    ap.add_argument("--traces", required=True)
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--recurrences", type=int, default=50)
    ap.add_argument("--eta", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=2.0)
    ap.add_argument("--dataset", default="librispeech")
    ap.add_argument("--gpu", default="v100")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]

    if args.mode == "compare":
        out = {}
        for gpu in GPUS:
            train, power = load(args.traces, gpu)
            for w in WORKLOADS:
                job = make_job(train, power, w)
                row = {}
                for seed in seeds:
                    try:
                        sim, history = simulate(train, power, job, seed, args.recurrences, args.eta, args.beta)
                        row[str(seed)] = cumulative_cost(sim, history, args.eta)
                    except Exception as e:  # noqa: BLE001 - reported, not hidden
                        row[str(seed)] = f"error: {e}"
                out[f"{w[0]}/{gpu}"] = row
                print(f"{w[0]}/{gpu}: {row}", file=sys.stderr)
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0

    train, power = load(args.traces, args.gpu)
    w = next(w for w in WORKLOADS if w[0] == args.dataset)
    job = make_job(train, power, w)
    simulate(train, power, job, seeds[0], args.recurrences, args.eta, args.beta)  # warm-up
    times = []
    for i in range(args.repeat):
        # Only simulate_one_job is timed (the traces are merged before), as in the Rust benchmark.
        sim = simulator(train, power, seeds[i % len(seeds)])
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            sim.simulate_one_job(job, args.recurrences, args.beta, args.eta)
            times.append(time.perf_counter() - t0)
    times.sort()
    json.dump(
        {
            "workload": f"{args.dataset}/{args.gpu}",
            "recurrences": args.recurrences,
            "repeat": args.repeat,
            "median_s": times[len(times) // 2],
            "min_s": times[0],
            "max_s": times[-1],
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
