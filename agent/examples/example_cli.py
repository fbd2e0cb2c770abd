"""What the example training scripts share (imported from their folder): the
command line, the seeded torch generator, and the file the reported metrics go to.

Options: --epochs N, --train N (examples), --val N, --seed S, --metrics-out PATH
(write the epochs' metrics as a JSON list, to compare with what the agent reported).
"""

import argparse
import json

import torch


def parse_args(epochs: int, train: int, val: int) -> argparse.Namespace:
    """The example's options, with its defaults for epochs and example counts."""
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train", type=int, default=train)
    p.add_argument("--val", type=int, default=val)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics-out")
    return p.parse_args()


def seeded_generator(seed: int) -> torch.Generator:
    """One CPU thread (the same metrics on every run) and a generator seeded with `seed`."""
    torch.set_num_threads(1)
    return torch.Generator().manual_seed(seed)


def write_metrics(path, metrics: list) -> None:
    """Writes `metrics` as a JSON list to `path` (nothing without a path)."""
    if path:
        with open(path, "w") as f:
            json.dump(metrics, f)
