"""The measurement window's pure-Python parts: framework sync at window edges
and the errors an install without the native extension gives. The windows
themselves are measured against the fake NVML by tests/wheel of the repository
(the wheel holds the native extension)."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace
from typing import Any, List

import pytest

import wattwise
from wattwise.monitor import Measurement, sync_frameworks


class FakeCuda:
    """Stands in for ``torch.cuda`` on a host with two GPUs."""

    def __init__(self) -> None:
        self.synced: List[int] = []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def device_count(self) -> int:
        return 2

    def synchronize(self, device: int) -> None:
        self.synced.append(device)


def test_sync_waits_for_every_torch_device_and_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = FakeCuda()
    torch: Any = ModuleType("torch")
    torch.cuda = cuda
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.delitem(sys.modules, "jax", raising=False)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    sync_frameworks()
    assert cuda.synced == [0, 1]
    sync_frameworks(["cupy"])  # not imported: nothing happens, nothing is imported
    assert "cupy" not in sys.modules
    assert cuda.synced == [0, 1]
    with pytest.raises(ValueError, match="mxnet"):
        sync_frameworks(["mxnet"])


def test_measurement_totals_and_zeus_fields() -> None:
    m = Measurement(time=2.0, gpu_energy={0: 10.0, 3: 5.5})
    assert m.total_energy == 15.5
    assert m.cpu_energy is None and m.dram_energy is None and m.soc_energy is None


def test_without_the_native_extension_monitor_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # This package as pip installs it from agent/python has no wattwise._native.
    monkeypatch.setitem(sys.modules, "wattwise._native", None)
    with pytest.raises(wattwise.MonitorError, match="native extension"):
        wattwise.Monitor()
    with pytest.raises(wattwise.MonitorError, match="native extension"):
        wattwise.ZeusMonitor()


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="sync_execution_with"):
        wattwise.ZeusMonitor(sync_execution_with=SimpleNamespace())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gpus"):
        wattwise.Monitor(gpus=[])
