"""The trainer callbacks, hook by hook (real training runs under the agent are in
tests/python/ of the repository)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from wattwise import EventWriter


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.log"
    path.write_text("")
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_hugging_face_callback(events: Path) -> None:
    from transformers import TrainerCallback, TrainerControl, TrainerState

    from wattwise.huggingface import WattwiseCallback

    cb = WattwiseCallback(metric="eval_accuracy", writer=EventWriter(events))
    assert isinstance(cb, TrainerCallback)
    state, control = TrainerState(), TrainerControl()
    assert cb.on_step_begin(None, state, control) is None
    assert cb.on_step_end(None, state, control) is None
    assert cb.on_evaluate(None, state, control, metrics={"eval_accuracy": 0.8, "eval_loss": 0.3}) is None
    # The callback sets no control flag.
    assert control == TrainerControl()
    with pytest.raises(KeyError, match=r"no 'eval_accuracy'.*\['eval_loss'\]"):
        cb.on_evaluate(None, state, control, metrics={"eval_loss": 0.3})
    # Only local process zero writes.
    other = TrainerState(is_local_process_zero=False)
    cb.on_step_begin(None, other, control)
    cb.on_evaluate(None, other, control, metrics={})
    assert lines(events) == ["step_begin", "step_end", "epoch_end 0.8"]
    with pytest.raises(ValueError, match="metric"):
        WattwiseCallback(metric="")


def lightning_trainer(**kw: Any) -> Any:
    base: dict[str, Any] = dict(local_rank=0, sanity_checking=False, callback_metrics={}, state=SimpleNamespace(fn="fit"))
    base.update(kw)
    return SimpleNamespace(**base)


def test_lightning_callback(events: Path) -> None:
    import torch
    from lightning.pytorch import Callback

    from wattwise.lightning import WattwiseCallback

    cb = WattwiseCallback(metric="val_acc", writer=EventWriter(events))
    assert isinstance(cb, Callback)
    t = lightning_trainer(callback_metrics={"val_acc": torch.tensor(0.625), "val_loss": torch.tensor(1.0)})
    cb.on_train_batch_start(t, None, None, 0)
    cb.on_train_batch_end(t, None, None, None, 0)
    cb.on_validation_end(t, None)
    # Not epochs: the sanity check, trainer.validate(), other ranks.
    cb.on_validation_end(lightning_trainer(sanity_checking=True), None)
    cb.on_validation_end(lightning_trainer(state=SimpleNamespace(fn="validate")), None)
    other = lightning_trainer(local_rank=1)
    cb.on_train_batch_start(other, None, None, 0)
    cb.on_validation_end(other, None)
    assert lines(events) == ["step_begin", "step_end", "epoch_end 0.625"]
    with pytest.raises(KeyError, match=r"no logged metric 'val_acc'.*\['val_loss'\]"):
        cb.on_validation_end(lightning_trainer(callback_metrics={"val_loss": 1.0}), None)
