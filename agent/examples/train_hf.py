#!/usr/bin/env python3
"""A Hugging Face `Trainer` run for `wattwise run`, through the `wattwise`
package's `WattwiseCallback`: a tiny BERT built from a config (no download)
learns a synthetic sequence classification task, on the GPU when there is one,
else on the CPU.

    pip install ./agent/python            # and transformers, accelerate, PyTorch
    wattwise run --server URL --job job.toml -- python3 agent/examples/train_hf.py

The task: sequences of 12 tokens from a 32-token vocabulary; the label says
whether token 7 occurs. The Trainer evaluates once per epoch; the callback
reports `eval_accuracy` as the epoch's metric. Nothing else in the Trainer is
changed for wattwise: only the batch size comes from `wattwise.batch_size()`.

Options: --epochs N, --train N, --val N, --seed S, --metrics-out PATH (the
epochs' eval_accuracy as a JSON list, from the Trainer's log history).
"""

import dataclasses
import sys
import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import wattwise
from example_cli import parse_args, seeded_generator, write_metrics  # this script's folder
from wattwise.huggingface import WattwiseCallback

VOCAB, LENGTH, MARK = 32, 12, 7

# transformers 4.41 renamed `evaluation_strategy` to `eval_strategy` (and later
# releases accept only the new name); older releases know only the old one.
EVAL_STRATEGY = (
    "eval_strategy"
    if "eval_strategy" in {f.name for f in dataclasses.fields(TrainingArguments)}
    else "evaluation_strategy"
)


class Sequences(torch.utils.data.Dataset):
    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=generator)
        # About half the sequences get the mark.
        self.ids[torch.rand(n, generator=generator) < 0.3, 0] = MARK
        self.labels = (self.ids == MARK).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def compute_metrics(prediction) -> dict:
    logits, labels = prediction
    return {"accuracy": float((logits.argmax(-1) == labels).mean())}


def main() -> int:
    args = parse_args(epochs=3, train=1024, val=256)
    torch.manual_seed(args.seed)
    g = seeded_generator(args.seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=wattwise.batch_size(32),
            per_device_eval_batch_size=128,
            learning_rate=1e-3,
            **{EVAL_STRATEGY: "epoch"},
            save_strategy="no",
            logging_strategy="epoch",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            seed=args.seed,
        )
        trainer = Trainer(
            model=model,
            args=training,
            train_dataset=Sequences(args.train, g),
            eval_dataset=Sequences(args.val, g),
            compute_metrics=compute_metrics,
            callbacks=[WattwiseCallback(metric="eval_accuracy")],
        )
        trainer.train()
    reported = [e["eval_accuracy"] for e in trainer.state.log_history if "eval_accuracy" in e]
    print(f"batch size {training.per_device_train_batch_size}, eval_accuracy per epoch: {reported}", flush=True)
    write_metrics(args.metrics_out, reported)
    return 0


if __name__ == "__main__":
    sys.exit(main())
