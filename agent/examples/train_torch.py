#!/usr/bin/env python3
"""A real PyTorch training script for `wattwise run`, through the `wattwise`
package (agent/python): a small MLP learns a synthetic classification task on the
CPU, with the batch size wattwise chose, and reports each epoch's validation
accuracy.

    pip install ./agent/python            # and PyTorch
    wattwise run --server URL --job job.toml -- python3 agent/examples/train_torch.py

Without the agent it trains the same way at its default batch size (64).

The task: 16 features from a fixed random linear "teacher"; the label is the sign
of the teacher's output, with 5% of labels flipped, so accuracy climbs over the
epochs and levels off near 0.95. Everything is seeded (--seed): the same batch
size gives the same metrics.

Options: --epochs N, --train N (examples), --val N, --seed S, --metrics-out PATH
(write the epochs' accuracies as a JSON list, to compare with what the agent
reported).
"""

import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import wattwise
from example_cli import parse_args, seeded_generator, write_metrics  # this script's folder

FEATURES = 16


# The GPU when there is one, else the CPU.
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def make_data(n: int, teacher: torch.Tensor, generator: torch.Generator) -> TensorDataset:
    x = torch.randn(n, FEATURES, generator=generator)
    y = (x @ teacher > 0).long()
    flip = torch.rand(n, generator=generator) < 0.05
    y[flip] = 1 - y[flip]
    return TensorDataset(x, y)


def accuracy(model: nn.Module, data: DataLoader) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in data:
            x, y = x.to(DEVICE), y.to(DEVICE)
            right += (model(x).argmax(dim=1) == y).sum().item()
            total += len(y)
    model.train()
    return right / total


def main() -> int:
    args = parse_args(epochs=5, train=4096, val=1024)
    torch.manual_seed(args.seed)
    g = seeded_generator(args.seed)
    teacher = torch.randn(FEATURES, generator=g)
    train = DataLoader(make_data(args.train, teacher, g), batch_size=wattwise.batch_size(64), shuffle=True, generator=g)
    val = DataLoader(make_data(args.val, teacher, g), batch_size=256)

    model = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 2)).to(DEVICE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()
    reported = []
    for epoch in range(1, args.epochs + 1):
        for x, y in train:
            x, y = x.to(DEVICE), y.to(DEVICE)
            with wattwise.step():
                optimizer.zero_grad()
                loss_fn(model(x), y).backward()
                optimizer.step()
        acc = accuracy(model, val)
        reported.append(acc)
        write_metrics(args.metrics_out, reported)  # before the event: the agent may stop the run after it
        wattwise.epoch_end(acc)
        print(f"epoch {epoch}: batch size {train.batch_size}, validation accuracy {acc:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
