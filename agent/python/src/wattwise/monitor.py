"""GPU time and energy over named windows of a Python program, in-process.

The measurement is the wattwise agent's own meter (the ``wattwise._native``
extension the wheel ships): NVML's energy counter where a GPU has a fine one,
sampled and integrated power otherwise, each figure with its bound::

    from wattwise import Monitor

    monitor = Monitor()                      # the GPUs this process sees
    with monitor.window("epoch") as w:
        train_one_epoch()
    print(w.measurement.time, w.measurement.total_energy)

Windows are named, and may nest and overlap (``begin_window("a")``,
``begin_window("b")``, ``end_window("a")``, ``end_window("b")``). At each window
edge the queued GPU work of torch, JAX and CuPy (those already imported) is
waited for, so a window holds the work launched inside it; ``sync=False`` (per
monitor or per call) leaves that out.

:class:`ZeusMonitor` is the same meter behind the constructor and methods of
``zeus.monitor.ZeusMonitor``, so code written for Zeus runs after changing its
import line.

Importing this module never needs a GPU; constructing a :class:`Monitor` on a
host without NVML raises :class:`MonitorError`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

__all__ = ["Measurement", "Monitor", "MonitorError", "Window", "ZeusMonitor", "sync_frameworks"]

#: The frameworks whose queued GPU work a window edge waits for.
FRAMEWORKS = ("torch", "jax", "cupy")


class MonitorError(RuntimeError):
    """The GPUs cannot be measured: no NVML (no NVIDIA driver on this host), no
    native extension (an install without the wheel), no GPU selected, or an NVML
    call failed. The message says which."""


@dataclass
class Measurement:
    """A window's time and GPU energy.

    ``gpu_energy`` maps each measured GPU's index (NVML's from :class:`Monitor`,
    CUDA's from :class:`ZeusMonitor`) to its energy in joules;
    ``gpu_energy_bound`` to the half-width of its bound (the true energy lies in
    ``energy ± bound``); ``gpu_energy_source`` to how it was measured
    (``counter`` or ``sampled``); ``energy_source`` is theirs combined
    (``counter``, ``sampled`` or ``mixed``). ``warning`` is set when the window
    was too short to be measured well. ``cpu_energy`` and ``dram_energy`` are
    (and ``soc_energy``) always ``None`` (wattwise measures GPUs only); they are here for code written
    for Zeus's ``Measurement``.
    """

    time: float
    gpu_energy: Dict[int, float]
    gpu_energy_bound: Dict[int, float] = field(default_factory=dict)
    gpu_energy_source: Dict[int, str] = field(default_factory=dict)
    energy_source: str = "none"
    total_energy_bound: float = 0.0
    warning: Optional[str] = None
    cpu_energy: Optional[Dict[int, float]] = None
    dram_energy: Optional[Dict[int, float]] = None
    soc_energy: None = None

    @property
    def total_energy(self) -> float:
        """Energy of all the measured GPUs, J."""
        return sum(self.gpu_energy.values())


class Window:
    """What ``with monitor.window(name) as w`` gives: ``w.measurement`` is set
    when the block ends (``None`` until then, or if the block raised)."""

    __slots__ = ("name", "measurement")

    def __init__(self, name: str) -> None:
        self.name = name
        self.measurement: Optional[Measurement] = None


def sync_frameworks(frameworks: Iterable[str] = FRAMEWORKS) -> None:
    """Waits for the GPU work queued by each of ``frameworks`` that is imported
    (never imports one): torch's CUDA devices, JAX's, CuPy's current device."""
    mods = sys.modules
    for name in frameworks:
        if name not in FRAMEWORKS:
            raise ValueError(f"sync: {name!r} is not one of {', '.join(FRAMEWORKS)}")
        if name not in mods:
            continue
        if name == "torch":
            torch = mods["torch"]
            cuda = getattr(torch, "cuda", None)
            if cuda is not None and cuda.is_available() and cuda.is_initialized():
                for i in range(cuda.device_count()):
                    cuda.synchronize(i)
        elif name == "jax":
            jax = mods["jax"]
            barrier = getattr(jax, "effects_barrier", None)
            if barrier is not None:
                barrier()
            (jax.device_put(0.0) + 0).block_until_ready()
        elif name == "cupy":
            cupy = mods["cupy"]
            if cupy.cuda.runtime.getDeviceCount() > 0:
                cupy.cuda.Device().synchronize()


def _gpus_flag(gpus: Union[None, str, int, Sequence[Union[int, str]]]) -> Optional[str]:
    if gpus is None:
        return None
    if isinstance(gpus, (str, int)):
        return str(gpus)
    items = [str(g) for g in gpus]
    if not items:
        raise ValueError("gpus: an empty list selects no GPU (None selects as the agent does)")
    return ",".join(items)


def _native() -> ModuleType:
    try:
        from wattwise import _native as native
    except ImportError as e:
        raise MonitorError(
            "wattwise.Monitor: this install has no native extension (wattwise._native: "
            f"{e}); install the wattwise wheel (`pip install wattwise`)"
        ) from None
    return native


class Monitor:
    """GPU time and energy over named windows (see the module docs).

    ``gpus``: ``None`` selects as the agent does (``CUDA_VISIBLE_DEVICES``, else
    ``NVIDIA_VISIBLE_DEVICES``, else every GPU; a MIG instance measures its
    parent GPU); or NVML indices or UUIDs (``GPU-…``, ``MIG-…``), as a list or a
    comma-separated string. ``sync``: wait for the frameworks' queued GPU work
    at each window edge (``True``: torch, JAX and CuPy where imported; or a
    list of their names; ``False``: never). ``power_interval``: seconds between
    power samples of GPUs measured by sampled power.

    Raises :class:`MonitorError` when the GPUs cannot be measured.
    """

    def __init__(
        self,
        gpus: Union[None, str, int, Sequence[Union[int, str]]] = None,
        *,
        sync: Union[bool, Sequence[str]] = True,
        power_interval: float = 0.1,
    ) -> None:
        flag = _gpus_flag(gpus)
        if sync is True:
            self._sync: Tuple[str, ...] = FRAMEWORKS
        elif sync is False:
            self._sync = ()
        else:
            self._sync = tuple(sync)
            for name in self._sync:
                if name not in FRAMEWORKS:
                    raise ValueError(f"sync: {name!r} is not one of {', '.join(FRAMEWORKS)}")
        self._meter = _native().Meter(flag, power_interval)

    @property
    def gpus(self) -> List[int]:
        """The measured GPUs' NVML indices, ascending."""
        return list(self._meter.gpus)

    @property
    def open_windows(self) -> List[str]:
        """The names of the windows begun and not yet ended, sorted."""
        return list(self._meter.open_windows)

    def begin_window(self, name: str, sync: Optional[bool] = None) -> None:
        """Begins the window ``name`` now. ``ValueError`` if one of that name is
        open. ``sync=False`` skips waiting for the frameworks this once."""
        if self._sync and sync is not False:
            sync_frameworks(self._sync)
        self._meter.begin(name)

    def end_window(self, name: str, sync: Optional[bool] = None) -> Measurement:
        """Ends the window ``name`` now and answers its :class:`Measurement`.
        ``ValueError`` if no window of that name is open."""
        if self._sync and sync is not False:
            sync_frameworks(self._sync)
        return _measurement(self._meter.end(name, False))

    def cancel_window(self, name: str) -> None:
        """Ends the window ``name`` without measuring it."""
        self._meter.end(name, True)

    @contextmanager
    def window(self, name: str, sync: Optional[bool] = None) -> Iterator[Window]:
        """``with monitor.window("step") as w:`` measures the block into
        ``w.measurement``; a block that raises cancels its window."""
        w = Window(name)
        self.begin_window(name, sync)
        try:
            yield w
        except BaseException:
            self.cancel_window(name)
            raise
        w.measurement = self.end_window(name, sync)


#: What the native meter's ``end`` answers: :class:`Measurement`'s fields in order.
_RawWindow = Tuple[float, Dict[int, float], Dict[int, float], Dict[int, str], str, float, Optional[str]]


def _measurement(raw: Optional[_RawWindow]) -> Measurement:
    if raw is None:
        return Measurement(time=0.0, gpu_energy={})
    return Measurement(*raw)


class ZeusMonitor:
    """The face of ``zeus.monitor.ZeusMonitor`` over wattwise's meter: code
    written for Zeus runs after changing its import to ``from wattwise import
    ZeusMonitor``.

    Applied: ``gpu_indices`` (CUDA indices, as Zeus's: with
    ``CUDA_VISIBLE_DEVICES=2,3``, index 0 is the GPU NVML numbers 2; ``None``:
    every visible GPU, ``0..n-1``), ``sync_execution_with`` (``"torch"``,
    ``"jax"`` or ``"cupy"``), ``begin_window(key, sync_execution=True,
    restart=False)``, ``end_window(key, sync_execution=True, cancel=False)``,
    and the measurement's ``time``, ``gpu_energy`` and ``total_energy``, keyed
    by those CUDA indices. CUDA's numbering is the agent's reading of
    ``CUDA_VISIBLE_DEVICES`` (indices, ``GPU-``/``MIG-`` UUIDs, up to the first
    entry that names no GPU; a MIG instance measures its parent GPU), else of
    ``NVIDIA_VISIBLE_DEVICES``, else every GPU, in ``CUDA_DEVICE_ORDER``. An
    index that is not visible is a ``ValueError`` naming it. Accepted and
    ignored: ``cpu_indices`` (no CPU or DRAM energy: ``cpu_energy`` and
    ``dram_energy`` are ``None``), ``approx_instant_energy`` (GPUs without a
    fine counter are always measured by sampled power), ``log_file``.
    """

    def __init__(
        self,
        gpu_indices: Optional[List[int]] = None,
        cpu_indices: Optional[List[int]] = None,
        approx_instant_energy: bool = False,
        log_file: Optional[str] = None,
        sync_execution_with: str = "torch",
    ) -> None:
        del cpu_indices, approx_instant_energy, log_file
        if not isinstance(sync_execution_with, str) or sync_execution_with not in FRAMEWORKS:
            raise ValueError(
                f"sync_execution_with: {sync_execution_with!r} is not one of {', '.join(FRAMEWORKS)}"
            )
        if gpu_indices is not None and len(gpu_indices) == 0:
            raise ValueError("gpu_indices: an empty list measures no GPU (None measures every visible one)")
        given = None if gpu_indices is None else list(gpu_indices)
        nvml = _native().cuda_gpus(given)
        keys = list(range(len(nvml))) if given is None else given
        self._sync = (sync_execution_with,)
        self._monitor = Monitor(nvml, sync=self._sync)
        self._meter = self._monitor._meter
        self._key = dict(zip(nvml, keys))
        #: The measured GPUs' CUDA indices (the keys of ``gpu_energy``).
        self.gpu_indices = keys

    def begin_window(self, key: str, sync_execution: bool = True, restart: bool = False) -> None:
        """Begins the window ``key`` (``restart``: begins it again if it is open)."""
        if restart and key in self._monitor.open_windows:
            self._monitor.cancel_window(key)
        if sync_execution:
            sync_frameworks(self._sync)
        self._meter.begin(key)

    def end_window(self, key: str, sync_execution: bool = True, cancel: bool = False) -> Measurement:
        """Ends the window ``key`` and answers its measurement, keyed by CUDA
        index (an empty one when ``cancel``)."""
        if cancel:
            self._monitor.cancel_window(key)
            return Measurement(time=0.0, gpu_energy={})
        if sync_execution:
            sync_frameworks(self._sync)
        m = _measurement(self._meter.end(key, False))
        for name in ("gpu_energy", "gpu_energy_bound", "gpu_energy_source"):
            setattr(m, name, {self._key[g]: v for g, v in getattr(m, name).items()})
        return m
