#!/usr/bin/env python3
"""A Lightning run for `wattwise run`, through the `wattwise` package's
`WattwiseCallback`: a small MLP learns a synthetic classification task on the
CPU (the task of train_torch.py).

    pip install ./agent/python            # and lightning, PyTorch
    wattwise run --server URL --job job.toml -- python3 agent/examples/train_lightning.py

The module logs `val_acc` in validation; the callback reports it after each
validation epoch (not the sanity check before training). Only the batch size
comes from `wattwise.batch_size()`; nothing else in the Trainer is changed.

Options: --epochs N, --train N, --val N, --seed S, --metrics-out PATH (the
epochs' val_acc as a JSON list, as the module computed them).
"""

import sys

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

import wattwise
from example_cli import parse_args, seeded_generator, write_metrics  # this script's folder
from train_torch import FEATURES, make_data  # the same task (this script's folder)
from wattwise.lightning import WattwiseCallback


class Classifier(pl.LightningModule):
    def __init__(self, metrics_out: "str | None") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 2))
        self.loss = nn.CrossEntropyLoss()
        self.metrics_out = metrics_out
        self.right = self.total = 0
        self.val_acc: list = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.right += (self.net(x).argmax(dim=1) == y).sum().item()
        self.total += len(y)

    def on_validation_epoch_end(self) -> None:
        acc = self.right / self.total
        self.right = self.total = 0
        self.log("val_acc", acc)
        if not self.trainer.sanity_checking:
            self.val_acc.append(acc)
            # Before the callback's event: the agent may stop the run after it.
            write_metrics(self.metrics_out, self.val_acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> int:
    args = parse_args(epochs=4, train=4096, val=1024)
    pl.seed_everything(args.seed, workers=True)
    g = seeded_generator(args.seed)
    teacher = torch.randn(FEATURES, generator=g)
    train = DataLoader(make_data(args.train, teacher, g), batch_size=wattwise.batch_size(64), shuffle=True)
    val = DataLoader(make_data(args.val, teacher, g), batch_size=256)
    model = Classifier(args.metrics_out)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if torch.cuda.is_available() else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[WattwiseCallback(metric="val_acc")],
    )
    trainer.fit(model, train, val)
    print(f"batch size {train.batch_size}, val_acc per epoch: {model.val_acc}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
