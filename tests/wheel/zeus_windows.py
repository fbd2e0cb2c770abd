"""A user's script written for Zeus's ZeusMonitor (tests/wheel/run.sh runs it
as is with Zeus 0.16.0, and with only its import line changed to wattwise's;
bench_windows.sh times both).

Against the fake NVML (loaded as libnvidia-ml.so.1; FAKE_NVML_COUNT GPUs at a
constant load, CUDA_VISIBLE_DEVICES as the test sets it), it measures a window of 0.4 s with a nested one of 0.2 s, and
reads the fake's ground truth around each; with an argument N it then times N
begin_window + end_window pairs without synchronization. Prints one JSON line.
"""

import ctypes
import json
import os
import sys
import time

from zeus.monitor import ZeusMonitor

lib = ctypes.CDLL("libnvidia-ml.so.1")
lib.fakeNvmlGroundTruthEnergy.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_double)]


# The fake's ground truth is by NVML index; the monitor's keys are CUDA indices
# (the test sets CUDA_VISIBLE_DEVICES to NVML indices only, if at all).
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
nvml_of = [int(v) for v in visible.split(",")] if visible else None


def truth(gpus):
    out = {}
    for i in gpus:
        v = ctypes.c_double()
        assert lib.fakeNvmlGroundTruthEnergy(nvml_of[i] if nvml_of else i, ctypes.byref(v)) == 0
        out[i] = v.value / 1000.0
    return out


monitor = ZeusMonitor(gpu_indices=None, sync_execution_with="torch")
gpus = list(monitor.gpu_indices)
t0 = truth(gpus)
monitor.begin_window("outer", sync_execution=False)
time.sleep(0.1)
n0 = truth(gpus)
monitor.begin_window("inner", sync_execution=False)
time.sleep(0.2)
n1 = truth(gpus)
inner = monitor.end_window("inner", sync_execution=False)
time.sleep(0.1)
t1 = truth(gpus)
outer = monitor.end_window("outer", sync_execution=False)

result = {
    "gpus": gpus,
    "windows": {
        name: {
            "time": m.time,
            "gpu_energy": {str(k): v for k, v in m.gpu_energy.items()},
            "total_energy": m.total_energy,
            "truth": {str(i): b[i] - a[i] for i in gpus},
        }
        for name, m, a, b in (("outer", outer, t0, t1), ("inner", inner, n0, n1))
    },
}
if len(sys.argv) > 1:
    n = int(sys.argv[1])
    start = time.perf_counter()
    for _ in range(n):
        monitor.begin_window("cost", sync_execution=False)
        monitor.end_window("cost", sync_execution=False)
    result["pair_us"] = (time.perf_counter() - start) / n * 1e6
print(json.dumps(result))
