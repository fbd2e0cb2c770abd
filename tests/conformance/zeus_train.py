"""One fake training session driven by Zeus's own batch size optimizer client.

Run as a process per training run (as a real job would be), with the server URL
and the job id as arguments: `python zeus_train.py URL JOB_ID [--crash-after N]`.
Only the GPU query is a stand-in (no GPU here): `get_gpus` answers one 300 W GPU,
and the monitor answers each epoch's time and energy from the workload below. The
client itself, its HTTP calls and its at-exit end-of-trial call are Zeus's.
Prints one JSON line: the batch size, the trial number, the outcome and epochs run.
"""

from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import zeus.optimizer.batch_size.client as bso_client
from zeus.optimizer.batch_size.common import JobSpec
from zeus.optimizer.batch_size.exceptions import ZeusBSOTrainFailError

# Per batch size: (time s per epoch, energy J per epoch, epoch at which the target is reached or None).
WORKLOAD = {
    16: (30.0, 6000.0, 4),   # three times 32's cost per epoch: stopped above beta x min_cost
    32: (10.0, 2000.0, 3),   # the cheapest that converges
    64: (8.0, 1600.0, None),  # never reaches the target: stopped at max_epochs
}
SPEC = dict(job_id_prefix="zeusclient", batch_sizes=[16, 32, 64], default_batch_size=32,
            eta_knob=0.5, beta_knob=2.0, target_metric=0.9, higher_is_better_metric=True,
            max_epochs=5, num_pruning_rounds=2, mab_seed=1)


class StandInGpus:
    """What the client asks of Zeus's GPU layer: count, power limit range (mW), name."""

    def __len__(self) -> int:
        return 1

    def get_power_management_limit_constraints(self, index: int):
        return (100_000, 300_000)

    def get_name(self, index: int) -> str:
        return "NVIDIA A100-SXM4-40GB"


class StandInMonitor:
    """A ZeusMonitor stand-in: each window is one epoch of the current batch size."""

    gpu_indices = [0]

    def __init__(self):
        self.batch_size = None

    def begin_window(self, key: str) -> None:
        pass

    def end_window(self, key: str):
        t, e, _ = WORKLOAD[self.batch_size]
        return SimpleNamespace(time=t, total_energy=e)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("job_id")
    ap.add_argument("--crash-after", type=int, default=None,
                    help="exit (as a crashed run) after this many epochs")
    args = ap.parse_args()

    bso_client.get_gpus = lambda ensure_homogeneous=True: StandInGpus()
    monitor = StandInMonitor()
    bso = bso_client.BatchSizeOptimizer(
        monitor=monitor, server_url=args.url, job=JobSpec(job_id=args.job_id, **SPEC)
    )
    bs = bso.get_batch_size()
    monitor.batch_size = bs
    _, _, converge_at = WORKLOAD[bs]
    bso.on_train_begin()
    outcome, message, epochs = "converged", "", 0
    try:
        for epoch in range(1, 100):
            epochs = epoch
            metric = 0.95 if converge_at is not None and epoch >= converge_at else 0.1
            bso.on_evaluate(metric)
            if bso.training_finished:
                break
            if args.crash_after is not None and epoch >= args.crash_after:
                outcome = "crashed"
                break
    except ZeusBSOTrainFailError as e:
        outcome, message = "failed", str(e)
    print(json.dumps({"job_id": bso.job.job_id, "batch_size": bs, "trial_number": bso.trial_number,
                      "outcome": outcome, "message": message, "epochs": epochs}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
