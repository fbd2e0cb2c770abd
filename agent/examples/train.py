#!/usr/bin/env python3
"""A tiny "training" script for `wattwise run`, with no GPU framework.

It reads the batch size wattwise chose from WATTWISE_BATCH_SIZE, pretends to train
(each step sleeps), and tells the agent about steps and epochs through the event
file named by WATTWISE_EVENTS:

    events = open(os.environ["WATTWISE_EVENTS"], "a", buffering=1)
    events.write("step_begin\\n"); train_one_step(); events.write("step_end\\n")
    events.write(f"epoch_end {validation_metric}\\n")

Its metric (an "accuracy" in [0, 1)) rises with the epochs, fastest at batch size
64 and slower the further the batch size is from it, so the batch size optimizer
has something to find.

When FAKE_NVML_STATE is set (the tests' fake NVML), a step takes as long as the
fake GPU's model says for GPU 0's current power limit:
`base * (load / min(limit, load))^0.3 * max(1, knee / limit)^3`
(FAKE_NVML_LOAD and FAKE_NVML_KNEE in watts), so power limits change step time.

Options: --epochs N, --steps N (per epoch), --step-time SECONDS (base),
--ground-truth PATH (with the fake: write the fake's energy counter, summed over
GPUs, in mJ, at start and at each epoch end, just before its event), --pids PATH (write this
process's pid and a helper child's pid, to check that a stop kills the group).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time


def fake_state():
    path = os.environ.get("FAKE_NVML_STATE")
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fake_energy_mj():
    """The fake GPUs' energy counters now (the ground truth), summed, mJ."""
    state = fake_state()
    if state is None:
        return None
    load = float(os.environ.get("FAKE_NVML_LOAD", "250")) * 1000
    now = time.monotonic_ns()
    total = 0.0
    for g in state["gpus"]:
        power = min(g["limit_mw"], load)
        total += g["energy_mj"] + power * max(0, now - g["since_ns"]) / 1e9
    return total


def step_factor():
    state = fake_state()
    if state is None or not state.get("gpus"):
        return 1.0
    limit = state["gpus"][0]["limit_mw"] / 1000
    load = float(os.environ.get("FAKE_NVML_LOAD", "250"))
    knee = float(os.environ.get("FAKE_NVML_KNEE", "200"))
    power = min(limit, load)
    return (load / power) ** 0.3 * max(1.0, knee / limit) ** 3


def accuracy(batch_size, epoch):
    rate = 0.6 * math.exp(-(math.log2(batch_size / 64)) ** 2 / 2)
    return 1 - math.exp(-rate * epoch)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--step-time", type=float, default=0.02)
    p.add_argument("--ground-truth")
    p.add_argument("--pids")
    args = p.parse_args()

    start_energy = fake_energy_mj()
    batch_size = int(os.environ.get("WATTWISE_BATCH_SIZE", "64"))
    path = os.environ.get("WATTWISE_EVENTS")
    events = open(path, "a", buffering=1) if path else open(os.devnull, "w")

    helper = None
    if args.pids:
        # A helper process in our process group, like a data loader worker.
        helper = subprocess.Popen(["sleep", "1000"])
        with open(args.pids, "w") as f:
            f.write(f"{os.getpid()} {helper.pid}\n")

    epoch_mj = []
    for epoch in range(1, args.epochs + 1):
        for _ in range(args.steps):
            events.write("step_begin\n")
            time.sleep(args.step_time * (batch_size / 64) ** 0.5 * step_factor())
            events.write("step_end\n")
        metric = accuracy(batch_size, epoch)
        if args.ground_truth and start_energy is not None:
            epoch_mj.append(fake_energy_mj())
            with open(args.ground_truth, "w") as f:
                json.dump({"start_mj": start_energy, "epochs_mj": epoch_mj}, f)
        events.write(f"epoch_end {metric:.6f}\n")
        print(f"epoch {epoch}: batch size {batch_size}, accuracy {metric:.4f}", flush=True)
    if helper is not None:
        helper.kill()
        helper.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
