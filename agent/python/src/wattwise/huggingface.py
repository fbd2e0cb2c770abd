"""A Hugging Face ``TrainerCallback`` that tells the wattwise agent about steps
and evaluations.

::

    from transformers import Trainer, TrainingArguments
    import wattwise
    from wattwise.huggingface import WattwiseCallback

    args = TrainingArguments(
        output_dir="out",
        per_device_train_batch_size=wattwise.batch_size(32),
        eval_strategy="epoch",  # one evaluation (one report) per epoch (evaluation_strategy before 4.41)
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      compute_metrics=accuracy,
                      callbacks=[WattwiseCallback(metric="eval_accuracy")])
    trainer.train()

Every optimizer step is a step (``on_step_begin`` / ``on_step_end``); every
evaluation is an epoch end with ``metrics[metric]`` (the Trainer prefixes the
names ``compute_metrics`` returns with ``eval_``), so evaluate once per epoch,
and call ``trainer.evaluate()`` yourself only after the run. The callback only writes
events: it changes no argument and no control flag of the trainer. With several
processes per host only the host's local process zero writes (one agent per
host). Importing this module imports ``transformers``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from transformers import TrainerCallback

from . import EventWriter, _CallbackEvents

__all__ = ["WattwiseCallback"]


class WattwiseCallback(TrainerCallback, _CallbackEvents):
    """Sends ``step_begin``/``step_end`` around each optimizer step and
    ``epoch_end <metrics[metric]>`` after each evaluation."""

    def __init__(self, metric: str, writer: Optional[EventWriter] = None) -> None:
        """``metric``: the evaluation metric to report, as the Trainer names it
        (e.g. ``"eval_accuracy"``). ``writer``: where events go (default: the file
        named by ``WATTWISE_EVENTS``; nowhere without the agent)."""
        self._setup_events(metric, writer, "an evaluation metric, e.g. 'eval_accuracy'")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Writes ``step_begin``."""
        if state.is_local_process_zero:
            self._events().step_begin()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Writes ``step_end``."""
        if state.is_local_process_zero:
            self._events().step_end()

    def on_evaluate(
        self,
        args: Any,
        state: Any,
        control: Any,
        metrics: Optional[Dict[str, float]] = None,
        **kwargs: Any,
    ) -> None:
        """Writes ``epoch_end`` with the chosen metric; a missing metric is an
        error naming the ones the evaluation produced."""
        if not state.is_local_process_zero:
            return
        metrics = metrics or {}
        if self.metric not in metrics:
            raise KeyError(
                f"WattwiseCallback: the evaluation produced no {self.metric!r};"
                f" it has {sorted(metrics)} (the Trainer prefixes compute_metrics' names with 'eval_')"
            )
        self._events().epoch_end(metrics[self.metric])
