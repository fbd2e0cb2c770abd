#!/usr/bin/env python3
"""Read-only check of the wattwise agent's meter on this machine's GPUs (run by
tests/gpu/run.sh; `--fake`: the same checks on the fake NVML, in seconds).

It never sets a power limit, a clock or a mode: it reads the limits before and
after, and fails if any changed. Checks, each one line:

1. `wattwise gpus` lists as many GPUs as NVML counts.
2. `wattwise measure --gpus 0` around an idle-then-heavy-then-light workload (torch
   on a real GPU; the fake's stepping load with --fake), against NVML's own
   counter delta read by the workload itself (ctypes, as nvidia-ml-py does) and
   its power sampled every 50 ms: the counter delta lies within the agent's bound
   (plus the agent's start and exit around the workload at the GPU's highest
   limit); prints the update period the agent found and how far the naive
   averaged power x time is off.
3. `CUDA_VISIBLE_DEVICES=<UUID>` measures that GPU only.
4. `--gpus` naming a GPU that does not exist is a clear error.
5. `wattwise exporter`'s power limit and energy match NVML (`nvidia-smi` on a real
   GPU, where it is installed).

Environment: WATTWISE_BIN (the agent), WATTWISE_NVML_LIB (the NVML library; the
fake's with --fake).
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

FAKE = "--fake" in sys.argv
BIN = os.environ.get("WATTWISE_BIN", "wattwise")
LIB = os.environ.get("WATTWISE_NVML_LIB") or "libnvidia-ml.so.1"


class Nvml:
    """The few NVML calls the check makes, through ctypes (read-only)."""

    def __init__(self):
        self.lib = ctypes.CDLL(LIB)
        if self.lib.nvmlInit_v2() != 0:
            raise SystemExit(f"cannot initialize NVML from {LIB}")

    def _handle(self, i):
        h = ctypes.c_void_p()
        assert self.lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) == 0, i
        return h

    def count(self):
        n = ctypes.c_uint()
        assert self.lib.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0
        return n.value

    def _uint(self, fn, i, kind=ctypes.c_uint):
        v = kind()
        rc = getattr(self.lib, fn)(self._handle(i), ctypes.byref(v))
        return v.value if rc == 0 else None

    def energy_mj(self, i):
        return self._uint("nvmlDeviceGetTotalEnergyConsumption", i, ctypes.c_ulonglong)

    def power_mw(self, i):
        return self._uint("nvmlDeviceGetPowerUsage", i)

    def limit_mw(self, i):
        return self._uint("nvmlDeviceGetPowerManagementLimit", i)

    def max_limit_mw(self, i):
        lo, hi = ctypes.c_uint(), ctypes.c_uint()
        rc = self.lib.nvmlDeviceGetPowerManagementLimitConstraints(self._handle(i), ctypes.byref(lo), ctypes.byref(hi))
        return hi.value if rc == 0 else None

    def uuid(self, i):
        buf = ctypes.create_string_buffer(96)
        assert self.lib.nvmlDeviceGetUUID(self._handle(i), buf, 96) == 0
        return buf.value.decode()


def workload(out_path):
    """The measured command: reads GPU 0's counter, samples its power every 50 ms,
    runs idle, heavy and light phases, reads the counter again."""
    nvml = Nvml()
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.monotonic(), nvml.power_mw(0) / 1000.0))
            time.sleep(0.05)

    t0, e0 = time.monotonic(), nvml.energy_mj(0)
    sampler = threading.Thread(target=sample)
    sampler.start()
    if FAKE:
        time.sleep(1.5)  # the fake's load steps: 60 W, 300 W, 120 W
    else:
        import torch  # a real check needs torch with CUDA

        assert torch.cuda.is_available(), "torch cannot see a CUDA GPU"
        dev = torch.device("cuda:0")
        time.sleep(2.0)  # idle
        a = torch.randn(8192, 8192, device=dev)
        end = time.monotonic() + 4.0
        while time.monotonic() < end:  # heavy
            (a @ a).sum().item()
        b = torch.randn(1024, 1024, device=dev)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # light
            (b @ b).sum().item()
            time.sleep(0.01)
        torch.cuda.synchronize()
    stop.set()
    sampler.join()
    t1, e1 = time.monotonic(), nvml.energy_mj(0)
    sampled = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(samples, samples[1:]))
    mean_w = sum(w for _, w in samples) / max(1, len(samples))
    with open(out_path, "w") as f:
        json.dump({"wall_s": t1 - t0, "counter_j": None if e0 is None else (e1 - e0) / 1000.0,
                   "sampled_j": sampled, "naive_j": mean_w * (t1 - t0)}, f)


def agent(args, env=None, timeout=120):
    p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    failures = []

    def check(ok, line):
        print(("ok    " if ok else "FAIL  ") + line, flush=True)
        if not ok:
            failures.append(line)

    nvml = Nvml()
    n = nvml.count()
    limits_before = [nvml.limit_mw(i) for i in range(n)]

    rc, out, err = agent(["gpus", "--format", "json"])
    listed = json.loads(out) if rc == 0 else []
    check(rc == 0 and len(listed) == n, f"wattwise gpus lists {len(listed)} GPU(s), NVML counts {n}")

    with tempfile.TemporaryDirectory(prefix="wattwise-gpu-check-") as tmp:
        out_path = os.path.join(tmp, "workload.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--workload", out_path] + (["--fake"] if FAKE else [])
        rc, _, err = agent(["measure", "--format", "json", "--gpus", "0", "--", *cmd])
        m = json.loads(err.strip().splitlines()[-1]) if rc == 0 else None
        if m is None:
            check(False, f"measure around the workload: exit {rc}: {err.strip()[-300:]}")
        else:
            w = json.load(open(out_path))
            g = m["gpus"][0]
            # The agent's window holds the workload's and the process around it.
            around_j = max(0.0, m["time_s"] - w["wall_s"]) * (nvml.max_limit_mw(0) or 0) / 1000.0
            ref = w["counter_j"] if w["counter_j"] is not None else w["sampled_j"]
            ok = abs(g["energy_j"] - ref) <= g["uncertainty_j"] + around_j
            check(ok, f"measure GPU 0: {g['energy_j']:.3f} ± {g['uncertainty_j']:.3f} J over {m['time_s']:.3f} s "
                      f"({g['energy_source']}, counter updates every {g['update_period_s'] * 1000:.1f} ms, power averaged "
                      f"over {g['average_window_s'] * 1000:.0f} ms, "
                      f"{'learned' if g['average_window_learned'] else 'assumed'}); "
                      f"NVML counter delta {ref:.3f} J over {w['wall_s']:.3f} s (+{around_j:.3f} J allowed for the "
                      f"agent around it); 50 ms power sampling {w['sampled_j']:.3f} J; naive averaged power x time "
                      f"{w['naive_j']:.3f} J ({(w['naive_j'] - ref) / ref:+.1%})")

        uuid = nvml.uuid(n - 1)
        rc, _, err = agent(["measure", "--format", "json", "--", "true"], {"CUDA_VISIBLE_DEVICES": uuid})
        got = [g["index"] for g in json.loads(err.strip().splitlines()[-1])["gpus"]] if rc == 0 else err
        check(got == [n - 1], f"CUDA_VISIBLE_DEVICES={uuid} measures GPU {got}")

        rc, _, err = agent(["measure", "--gpus", "GPU-no-such-gpu", "--", "true"])
        check(rc != 0 and "GPU-no-such-gpu" in err, f"--gpus GPU-no-such-gpu: exit {rc}, {err.strip()[-160:]!r}")

        port = free_port()
        ex = subprocess.Popen([BIN, "exporter", "--listen", f"127.0.0.1:{port}"], stderr=subprocess.PIPE,
                              start_new_session=True)
        try:
            text = None
            deadline = time.monotonic() + 20
            while text is None and time.monotonic() < deadline:
                try:
                    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                except OSError:
                    time.sleep(0.05)
            after_mj = nvml.energy_mj(0)
        finally:
            os.killpg(ex.pid, signal.SIGTERM)
            ex.wait(timeout=10)
        series = {}
        for line in (text or "").splitlines():
            if line.startswith("wattwise_gpu_") and 'gpu="0"' in line:
                series[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
        limit_w = series.get("wattwise_gpu_power_limit_watts")
        energy_j = series.get("wattwise_gpu_energy_joules_total")
        if not FAKE and shutil.which("nvidia-smi"):
            smi = subprocess.run(["nvidia-smi", "--query-gpu=power.limit", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True).stdout.strip()
            ref_limit, what = float(smi), "nvidia-smi"
        else:
            ref_limit, what = nvml.limit_mw(0) / 1000.0, "NVML"
        ok = limit_w is not None and abs(limit_w - ref_limit) < 1.0
        if energy_j is not None and after_mj is not None:
            # Read after the scrape: never less, and at most 2 s at the highest limit more.
            gap = after_mj / 1000.0 - energy_j
            ok = ok and -1.0 <= gap <= 2.0 * (nvml.max_limit_mw(0) or 0) / 1000.0
        else:
            gap = None
        check(ok, f"exporter: power limit {limit_w} W ({what}: {ref_limit} W), energy counter {energy_j} J "
                  f"(NVML just after: {gap if gap is None else f'+{gap:.3f}'} J)")

    limits_after = [nvml.limit_mw(i) for i in range(n)]
    check(limits_after == limits_before, f"no power limit changed: {limits_before} mW")
    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} of the checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if "--workload" in sys.argv:
        workload(sys.argv[sys.argv.index("--workload") + 1])
    else:
        sys.exit(main())
