"""Tell the wattwise agent about a training script's steps and epochs.

``wattwise run`` starts the training command with two environment variables:
``WATTWISE_BATCH_SIZE`` (the batch size this run must use) and ``WATTWISE_EVENTS``
(a file the agent follows). The script appends one line per event to that file:
``step_begin``, ``step_end`` and ``epoch_end <metric>``. This package writes those
lines for you::

    import wattwise

    loader = DataLoader(data, batch_size=wattwise.batch_size(64))
    for epoch in range(epochs):
        for batch in loader:
            with wattwise.step():
                train_one_step(batch)
        wattwise.epoch_end(validate())

Without the agent (``WATTWISE_EVENTS`` unset) every call does nothing and
:func:`batch_size` returns its default, so the same script runs anywhere.

GPU time and energy over named windows, in-process: :class:`Monitor` (and
:class:`ZeusMonitor`, Zeus's face of it), in :mod:`wattwise.monitor`.

Trainers: :class:`wattwise.huggingface.WattwiseCallback` (Hugging Face
``Trainer``) and :class:`wattwise.lightning.WattwiseCallback` (Lightning). Their
frameworks are imported only when those modules are; this one needs nothing
beyond the standard library.
"""

from __future__ import annotations

import math
import os
import threading
from types import TracebackType
from typing import Optional, SupportsFloat, Type, Union, overload

from wattwise.monitor import Measurement, Monitor, MonitorError, ZeusMonitor

__all__ = [
    "BATCH_SIZE_ENV",
    "EVENTS_ENV",
    "EventWriter",
    "Measurement",
    "Monitor",
    "MonitorError",
    "ZeusMonitor",
    "active",
    "batch_size",
    "epoch_end",
    "step",
    "step_begin",
    "step_end",
]

__version__ = "0.1.0"

#: The environment variable holding the batch size wattwise chose for this run.
BATCH_SIZE_ENV = "WATTWISE_BATCH_SIZE"
#: The environment variable naming the events file the agent follows.
EVENTS_ENV = "WATTWISE_EVENTS"


class _Step:
    """The context manager :meth:`EventWriter.step` returns (reused, stateless)."""

    __slots__ = ("_writer",)

    def __init__(self, writer: EventWriter) -> None:
        self._writer = writer

    def __enter__(self) -> None:
        self._writer.step_begin()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._writer.step_end()


class EventWriter:
    """Writes the agent's event lines to one events file.

    Each event is one ``write`` of one line to the file opened in append mode, so
    lines from threads or forked processes never interleave. The file is opened at
    the first event. With ``path`` ``None`` every method does nothing.

    Most scripts use the module's functions, which write to the file named by
    ``WATTWISE_EVENTS``; an ``EventWriter`` of your own is for tests and for
    writing to another file.
    """

    def __init__(self, path: Union[str, os.PathLike[str], None]) -> None:
        """Writes to ``path`` (created by the agent), or nowhere when ``None``."""
        self._path = os.fspath(path) if path is not None else None
        self._fd: Optional[int] = None
        self._lock = threading.Lock()
        self._step = _Step(self)

    @property
    def path(self) -> Optional[str]:
        """The events file, or ``None`` when this writer writes nothing."""
        return self._path

    @property
    def active(self) -> bool:
        """Whether events go anywhere."""
        return self._path is not None

    def _write(self, line: bytes) -> None:
        if self._path is None:
            return
        fd = self._fd
        if fd is None:
            fd = self._open()
        os.write(fd, line)

    def _open(self) -> int:
        with self._lock:
            if self._fd is None:
                assert self._path is not None
                try:
                    # No O_CREAT: the agent creates the file before the script starts.
                    self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                except OSError as e:
                    raise RuntimeError(
                        f"wattwise: cannot open the events file {self._path!r}"
                        f" (named by {EVENTS_ENV}): {e.strerror}"
                    ) from e
            return self._fd

    def close(self) -> None:
        """Closes the file (a later event opens it again)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def step_begin(self) -> None:
        """A training step begins."""
        self._write(b"step_begin\n")

    def step_end(self) -> None:
        """A training step ended."""
        self._write(b"step_end\n")

    def step(self) -> _Step:
        """A context manager around one training step: ``with writer.step(): ...``."""
        return self._step

    def epoch_end(self, metric: SupportsFloat) -> None:
        """An epoch ended; ``metric`` is its validation metric (the one the job's
        ``target_metric`` is compared with). Raises ``ValueError`` unless it is a
        finite number."""
        value = float(metric)
        if not math.isfinite(value):
            raise ValueError(f"wattwise.epoch_end: the metric must be a finite number, got {value!r}")
        self._write(f"epoch_end {value!r}\n".encode())


_default: Optional[EventWriter] = None
_default_lock = threading.Lock()


def _writer() -> EventWriter:
    """The writer of the file named by ``WATTWISE_EVENTS`` (read once)."""
    w = _default
    if w is not None:
        return w
    return _make_default()


def _make_default() -> EventWriter:
    global _default
    with _default_lock:
        if _default is None:
            _default = EventWriter(os.environ.get(EVENTS_ENV) or None)
        return _default


class _CallbackEvents:
    """What the framework callbacks (``wattwise.huggingface``, ``wattwise.lightning``)
    share: the metric they report, and the writer their events go to."""

    metric: str
    _writer: Optional[EventWriter]

    def _setup_events(self, metric: str, writer: Optional[EventWriter], example: str) -> None:
        """Keeps ``metric`` (an empty one is an error that shows ``example``) and
        ``writer`` (``None``: the file named by ``WATTWISE_EVENTS``)."""
        if not metric:
            raise ValueError(f"WattwiseCallback: metric must name {example}")
        self.metric = metric
        self._writer = writer

    def _events(self) -> EventWriter:
        return self._writer if self._writer is not None else _writer()


def active() -> bool:
    """Whether the script runs under ``wattwise run`` (``WATTWISE_EVENTS`` is set)."""
    return _writer().active


@overload
def batch_size() -> Optional[int]: ...


@overload
def batch_size(default: int) -> int: ...


def batch_size(default: Optional[int] = None) -> Optional[int]:
    """The batch size wattwise chose for this run (``WATTWISE_BATCH_SIZE``), or
    ``default`` when the script runs without the agent.

    Raises ``ValueError`` if the variable is set but is not a positive integer.
    """
    text = os.environ.get(BATCH_SIZE_ENV, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{BATCH_SIZE_ENV}={text!r}: must be a positive integer")
    return value


def step_begin() -> None:
    """A training step begins (write it before the forward pass)."""
    _writer().step_begin()


def step_end() -> None:
    """A training step ended (write it after the optimizer step)."""
    _writer().step_end()


def step() -> _Step:
    """A context manager around one training step::

    with wattwise.step():
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
    """
    return _writer().step()


def epoch_end(metric: SupportsFloat) -> None:
    """An epoch ended with this validation metric (e.g. accuracy). The agent
    reports it, with the epoch's time and energy, to the endpoint, which may stop
    the run. Raises ``ValueError`` unless the metric is a finite number."""
    _writer().epoch_end(metric)
