"""A Lightning ``Callback`` that tells the wattwise agent about steps and
validation epochs.

::

    import lightning.pytorch as pl
    import wattwise
    from wattwise.lightning import WattwiseCallback

    class Model(pl.LightningModule):
        def validation_step(self, batch, batch_idx):
            ...
            self.log("val_acc", accuracy)

    loader = DataLoader(train, batch_size=wattwise.batch_size(32))
    trainer = pl.Trainer(max_epochs=10, callbacks=[WattwiseCallback(metric="val_acc")])
    trainer.fit(Model(), loader, val_loader)

Every training batch is a step (``on_train_batch_start`` / ``on_train_batch_end``);
every validation run inside ``fit`` (once per epoch by default; the sanity check
before training and ``trainer.validate()`` are not) is an epoch end with the logged ``metric`` from
``trainer.callback_metrics``. The callback only writes events: it changes nothing
in the trainer. With several processes per host only local rank zero writes (one
agent per host).

It subclasses ``lightning.pytorch.Callback`` when the ``lightning`` package is
installed, else ``pytorch_lightning.Callback``; importing this module imports that
package.
"""

from __future__ import annotations

from typing import Any, Optional

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    from pytorch_lightning import Callback

from . import EventWriter, _CallbackEvents

__all__ = ["WattwiseCallback"]


class WattwiseCallback(Callback, _CallbackEvents):
    """Sends ``step_begin``/``step_end`` around each training batch and
    ``epoch_end <metric>`` after each validation run."""

    def __init__(self, metric: str, writer: Optional[EventWriter] = None) -> None:
        """``metric``: the name a ``LightningModule`` logs with ``self.log`` (e.g.
        ``"val_acc"``). ``writer``: where events go (default: the file named by
        ``WATTWISE_EVENTS``; nowhere without the agent)."""
        super().__init__()
        self._setup_events(metric, writer, "a logged metric, e.g. 'val_acc'")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Writes ``step_begin``."""
        if trainer.local_rank == 0:
            self._events().step_begin()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Writes ``step_end``."""
        if trainer.local_rank == 0:
            self._events().step_end()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Writes ``epoch_end`` with the logged metric (after the epoch's values
        are aggregated); a missing metric is an error naming the logged ones."""
        # Only validation inside fit() ends an epoch (not trainer.validate()).
        if trainer.sanity_checking or trainer.local_rank != 0 or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        if self.metric not in metrics:
            raise KeyError(
                f"WattwiseCallback: no logged metric {self.metric!r};"
                f" the LightningModule logged {sorted(metrics)} (log it with self.log in validation)"
            )
        self._events().epoch_end(metrics[self.metric])
