"""The wheel's Python API as installed, against the fake NVML (tests/fake-nvml).

Run by tests/wheel/run.sh from a folder outside the checkout, with
WATTWISE_NVML_LIB naming the fake. The fake's exported
``fakeNvmlGroundTruthEnergy`` (mJ, exact, in this same process: the meter and
this script load one copy of the library) is the ground truth each window's
energy must match within 0.5%: single, nested, overlapping and 1,000 short
windows, the ``with`` form and the Zeus face, on GPUs with the energy counter
and on GPUs measured by sampled power (``FAKE_NVML_NO_ENERGY=all``, each mode in
a process of its own, since the fake reads its configuration at init).
Also: the errors (repeated and unknown names, no NVML), that importing needs
no GPU, and the Zeus face's CUDA indices under ``CUDA_VISIBLE_DEVICES`` (a UUID
and an index on 4 GPUs of distinct power: each index measures its GPU, an index
not visible raises). Prints one line per mode.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

TOLERANCE = 0.005


def fail(msg: str) -> None:
    print(f"wheel api: {msg}", file=sys.stderr)
    sys.exit(1)


def check_close(what: str, got: float, want: float, span: tuple[float, float] | None = None) -> None:
    """``got`` within 0.5% of ``want``; or, where ``span`` gives the ground truth
    over the inner and outer spans of the window's edges (each edge bracketed by
    two reads), within 0.5% of that bracket: on a loaded machine an edge's call
    can take milliseconds, and the truth is then only known to lie in between."""
    if want > 0 and abs(got - want) <= TOLERANCE * want:
        return
    if span is not None and want > 0 and span[0] * (1 - TOLERANCE) <= got <= span[1] * (1 + TOLERANCE):
        return
    bracket = "" if span is None else f", between {span[0]:.6f} and {span[1]:.6f} J"
    fail(f"{what}: measured {got:.6f} J, ground truth {want:.6f} J{bracket} (over 0.5% apart)")


def mode(sampled: bool) -> None:
    import wattwise
    from wattwise import Monitor, ZeusMonitor

    if "site-packages" not in wattwise.__file__:
        fail(f"wattwise imported from {wattwise.__file__}, not the venv")
    lib = ctypes.CDLL(os.environ["WATTWISE_NVML_LIB"])
    lib.fakeNvmlGroundTruthEnergy.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_double)]

    monitor = Monitor(power_interval=0.01)
    gpus = monitor.gpus
    if gpus != [0, 1]:
        fail(f"Monitor().gpus = {gpus}, wanted [0, 1] (FAKE_NVML_COUNT=2)")

    def truth() -> dict[int, float]:
        out = {}
        for i in gpus:
            v = ctypes.c_double()
            if lib.fakeNvmlGroundTruthEnergy(i, ctypes.byref(v)) != 0:
                fail(f"fakeNvmlGroundTruthEnergy({i}) failed")
            out[i] = v.value / 1000.0
        return out

    def check(name: str, m: wattwise.Measurement, t0: dict[int, float], t1: dict[int, float],
              brackets: tuple | None = None) -> None:
        """``t0``/``t1``: the truth at the edges; ``brackets``: each edge's reads
        before and after its call (see ``edge``), where they were taken."""
        if sorted(m.gpu_energy) != gpus:
            fail(f"{name}: keys {sorted(m.gpu_energy)}, wanted {gpus}")
        want_source = "sampled" if sampled else "counter"
        if m.energy_source != want_source:
            fail(f"{name}: energy_source {m.energy_source}, wanted {want_source}")

        def span(keys: list[int]) -> tuple[float, float] | None:
            if brackets is None:
                return None
            (b_before, b_after), (e_before, e_after) = brackets
            return (sum(e_before[i] - b_after[i] for i in keys),
                    sum(e_after[i] - b_before[i] for i in keys))

        for i in gpus:
            check_close(f"{name} GPU {i}", m.gpu_energy[i], t1[i] - t0[i], span([i]))
        check_close(f"{name} total", m.total_energy, sum(t1.values()) - sum(t0.values()), span(gpus))

    # Each window edge is bracketed by ground-truth reads; the edge's truth is the
    # midpoint (the meter reads inside the bracket), so a window's truth is the
    # difference of its edges' midpoints, and the measured energy must also lie
    # between the inner (after begin, before end) and outer spans.
    def edge(call):
        before = truth()
        result = call()
        after = truth()
        return {i: (before[i] + after[i]) / 2 for i in gpus}, result, (before, after)

    # Single.
    t0, _, b0 = edge(lambda: monitor.begin_window("single"))
    time.sleep(0.3)
    t1, m, b1 = edge(lambda: monitor.end_window("single"))
    check("single", m, t0, t1, (b0, b1))
    if not 0.29 < m.time < 0.5:
        fail(f"single: time {m.time}")

    def play(label: str, events: list) -> None:
        """Begins and ends windows in the order given (each followed by its sleep),
        then checks every window against the ground truth at its two edges."""
        begun, ended = {}, {}
        for what, name, pause in events:
            if what == "begin":
                begun[name] = edge(lambda: monitor.begin_window(name))
            else:
                ended[name] = edge(lambda: monitor.end_window(name))
            time.sleep(pause)
        for name, (t1, m, b1) in ended.items():
            t0, _, b0 = begun[name]
            check(f"{label} {name}", m, t0, t1, (b0, b1))

    # Nested: outer holds inner.
    play("nested", [("begin", "outer", 0.1), ("begin", "inner", 0.2),
                    ("end", "inner", 0.1), ("end", "outer", 0)])
    # Overlapping: a begins, b begins, a ends, b ends.
    play("overlapping", [("begin", "a", 0.1), ("begin", "b", 0.1),
                         ("end", "a", 0.1), ("end", "b", 0)])

    # 1,000 short windows (about 1 ms each): their sum, against the midpoints and
    # between the inner and outer spans. One alone is within its bound, not 0.5%:
    # the counter counts whole mJ, and 10 us of scheduling is 0.5% of 1 ms.
    got = want = inner_sum = outer_sum = 0.0
    for _ in range(1000):
        t0, _, (b_before, b_after) = edge(lambda: monitor.begin_window("short", sync=False))
        time.sleep(0.001)
        t1, m, (e_before, e_after) = edge(lambda: monitor.end_window("short", sync=False))
        got += m.total_energy
        want += sum(t1.values()) - sum(t0.values())
        inner_sum += sum(e_before.values()) - sum(b_after.values())
        outer_sum += sum(e_after.values()) - sum(b_before.values())
    check_close("1,000 short windows, summed", got, want, (inner_sum, outer_sum))
    if not inner_sum * (1 - TOLERANCE) <= got <= outer_sum * (1 + TOLERANCE):
        fail(f"1,000 short windows: {got:.3f} J is not between the inner {inner_sum:.3f} J "
             f"and outer {outer_sum:.3f} J spans of the ground truth")
    apart = abs(got - want) / want

    # The with form.
    t0 = truth()
    with monitor.window("with") as w:
        time.sleep(0.1)
    t1 = truth()
    if w.measurement is None:
        fail("with: no measurement")
    check("with", w.measurement, t0, t1)

    # Errors: a repeated name, an unknown one; both leave the monitor usable.
    monitor.begin_window("x")
    try:
        monitor.begin_window("x")
        fail("begin_window of an open name did not raise")
    except ValueError as e:
        if "'x'" not in str(e) and '"x"' not in str(e):
            fail(f"repeated name: {e}")
    try:
        monitor.end_window("nope")
        fail("end_window of an unknown name did not raise")
    except ValueError as e:
        if "nope" not in str(e):
            fail(f"unknown name: {e}")
    monitor.end_window("x")
    if monitor.open_windows:
        fail(f"windows left open: {monitor.open_windows}")

    # The Zeus face, with Zeus's arguments.
    zeus = ZeusMonitor(gpu_indices=[1], cpu_indices=[0], approx_instant_energy=True)
    t0, _, _ = edge(lambda: zeus.begin_window("z", sync_execution=False))
    time.sleep(0.1)
    t1, z, _ = edge(lambda: zeus.end_window("z", sync_execution=False))
    if sorted(z.gpu_energy) != [1] or z.cpu_energy is not None:
        fail(f"ZeusMonitor(gpu_indices=[1]): {z}")
    check_close("zeus face", z.gpu_energy[1], t1[1] - t0[1])
    if not z.time > 0.09:
        fail(f"zeus face: time {z.time}")
    print(f"wheel api: {'sampled' if sampled else 'counter'} GPUs: windows match the ground truth "
          f"(1,000 short windows, summed: {apart:.3%} apart)", file=sys.stderr)


#: The "cuda" mode's GPUs: power limits (W, the load is 250 W) that make each
#: GPU's energy its own, and CUDA_VISIBLE_DEVICES naming GPU 3 by UUID, then 1.
CUDA_LIMITS_W = (300, 120, 300, 180)
CUDA_VISIBLE = "GPU-fa4e0000-0000-4000-8000-000000000003,1"


def cuda_mode() -> None:
    """The Zeus face's gpu_indices are CUDA indices: under CUDA_VISIBLE_DEVICES
    (CUDA_VISIBLE above, on 4 fake GPUs) index 0 is NVML GPU 3 and 1 is GPU 1,
    the keys of gpu_energy are 0 and 1, and index 2 is an error naming it."""
    from wattwise import Monitor, ZeusMonitor

    lib = ctypes.CDLL(os.environ["WATTWISE_NVML_LIB"])
    lib.fakeNvmlGroundTruthEnergy.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_double)]
    lib.nvmlDeviceGetHandleByIndex_v2.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
    lib.nvmlDeviceSetPowerManagementLimit.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    if lib.nvmlInit_v2() != 0:
        fail("cuda: nvmlInit_v2 failed")
    for i, watts in enumerate(CUDA_LIMITS_W):
        h = ctypes.c_void_p()
        if (lib.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h)) != 0
                or lib.nvmlDeviceSetPowerManagementLimit(h, watts * 1000) != 0):
            fail(f"cuda: setting GPU {i}'s limit failed")

    def truth() -> dict[int, float]:  # by NVML index
        out = {}
        for i in range(len(CUDA_LIMITS_W)):
            v = ctypes.c_double()
            if lib.fakeNvmlGroundTruthEnergy(i, ctypes.byref(v)) != 0:
                fail(f"fakeNvmlGroundTruthEnergy({i}) failed")
            out[i] = v.value / 1000.0
        return out

    def window(zeus: ZeusMonitor) -> tuple[dict[int, float], dict[int, float]]:
        a = truth()
        zeus.begin_window("w", sync_execution=False)
        b = truth()
        time.sleep(0.2)
        c = truth()
        m = zeus.end_window("w", sync_execution=False)
        d = truth()
        return m.gpu_energy, {i: (c[i] + d[i] - a[i] - b[i]) / 2 for i in a}

    nvml_of = {0: 3, 1: 1}  # CUDA index -> NVML index, by CUDA_VISIBLE above
    for given in (None, [1], [1, 0]):
        zeus = ZeusMonitor(gpu_indices=given)
        keys = [0, 1] if given is None else given
        if zeus.gpu_indices != keys:
            fail(f"cuda: ZeusMonitor(gpu_indices={given}).gpu_indices = {zeus.gpu_indices}, wanted {keys}")
        energy, spent = window(zeus)
        if sorted(energy) != sorted(keys):
            fail(f"cuda: ZeusMonitor(gpu_indices={given}): keys {sorted(energy)}, wanted {sorted(keys)}")
        for k in keys:
            check_close(f"cuda: gpu_indices={given} CUDA {k} (NVML {nvml_of[k]})", energy[k],
                        spent[nvml_of[k]])
        del zeus
    for bad in ([2], [0, -1]):
        try:
            ZeusMonitor(gpu_indices=bad)
            fail(f"cuda: ZeusMonitor(gpu_indices={bad}) did not raise")
        except ValueError as e:
            index = bad[-1]
            if f"CUDA index {index} " not in str(e) or "2 GPU(s)" not in str(e):
                fail(f"cuda: ZeusMonitor(gpu_indices={bad}): {e}")
    # wattwise's own Monitor keeps NVML indices: the same two GPUs, ascending.
    if Monitor().gpus != [1, 3]:
        fail(f"cuda: Monitor().gpus = {Monitor().gpus}, wanted [1, 3]")
    print("wheel api: Zeus face under CUDA_VISIBLE_DEVICES: CUDA indices measure their GPUs",
          file=sys.stderr)


def main() -> None:
    if len(sys.argv) > 1:
        if sys.argv[1] == "cuda":
            cuda_mode()
        else:
            mode(sys.argv[1] == "sampled")
        return
    # Importing needs no GPU, and a Monitor without NVML is one clear error.
    env = dict(os.environ, WATTWISE_NVML_LIB="/nonexistent/libnvidia-ml.so.1")
    probe = ("import wattwise\n"
             "try:\n    wattwise.Monitor()\nexcept wattwise.MonitorError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if out.returncode != 0 or "NVIDIA" not in out.stdout:
        fail(f"Monitor() without NVML: rc {out.returncode}: {out.stdout} {out.stderr}")
    for sampled in (False, True):
        env = dict(os.environ, FAKE_NVML_COUNT="2")
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
        if sampled:
            env["FAKE_NVML_NO_ENERGY"] = "all"
        rc = subprocess.run([sys.executable, __file__, "sampled" if sampled else "counter"], env=env)
        if rc.returncode != 0:
            sys.exit(rc.returncode)
    env = dict(os.environ, FAKE_NVML_COUNT=str(len(CUDA_LIMITS_W)), CUDA_VISIBLE_DEVICES=CUDA_VISIBLE)
    env.pop("NVIDIA_VISIBLE_DEVICES", None)
    env.pop("FAKE_NVML_STATE", None)
    rc = subprocess.run([sys.executable, __file__, "cuda"], env=env)
    if rc.returncode != 0:
        sys.exit(rc.returncode)


if __name__ == "__main__":
    main()
