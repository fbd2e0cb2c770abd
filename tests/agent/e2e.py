#!/usr/bin/env python3
"""End-to-end tests of the GPU agent (`wattwise gpus|measure|run`).

Real parts only: the agent binary, loading the fake NVML library
(tests/fake-nvml, libnvidia_ml.so) through nvml-wrapper via WATTWISE_NVML_LIB,
the local endpoint `wattwise-server` on 127.0.0.1 (free port, own process group,
killed by group), and agent/examples/train.py as the training command. The server,
the recording proxy and the fake host are tests/lib/agent_harness.py's.

Environment: WATTWISE_BIN, FAKE_NVML_LIB, WATTWISE_SERVER_BIN (run.sh sets them).
Usage: e2e.py [TEST_NAME_SUBSTRING...]
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from agent_harness import (  # noqa: E402
    AGENT,
    KNEE_W,
    LOAD_W,
    TRAIN,
    Host,
    Recorder,
    Server,
    fake_energy_j,
    free_port,
    job_id_of,
    optimum_w,
    process_gone,
    read_history,
    run_suite,
    wait_until,
)

# ---- the fake GPU's model, to know which limit each selector must pick --------

LIMITS_W = [300, 250, 200, 150, 100]


def model(limit):
    power = min(limit, LOAD_W)
    t = (LOAD_W / power) ** 0.3 * max(1.0, KNEE_W / limit) ** 3
    return power * t, t  # energy and time of a step, in relative units


def expected(selector):
    m = {l: model(l) for l in LIMITS_W}
    kind = selector["kind"]
    if kind == "energy":
        return min(LIMITS_W, key=lambda l: m[l][0])
    if kind == "time":
        return min(LIMITS_W, key=lambda l: m[l][1])
    if kind == "zeus_cost":
        eta = selector["eta"]
        return min(LIMITS_W, key=lambda l: eta * m[l][0] + (1 - eta) * max(LIMITS_W) * m[l][1])
    if kind == "max_slowdown":
        return min(l for l in LIMITS_W if m[l][1] <= selector["factor"] * m[max(LIMITS_W)][1])
    raise ValueError(kind)


def least_profiled(selector, rises=2):
    """The limits a wattwise job's profile visits at least (the core's
    `profile_settled` without bounds: a meter's bounds only make it longer)."""
    m = {l: model(l) for l in LIMITS_W}
    kind = selector["kind"]
    top = max(LIMITS_W)
    if kind == "max_slowdown":
        out, risen = [], 0
        for l in LIMITS_W:
            out.append(l)
            risen = risen + 1 if m[l][1] > selector["factor"] * m[top][1] else 0
            if risen >= rises:
                break
        return out
    eta = {"energy": 1.0, "time": 0.0}.get(kind, selector.get("eta"))
    cost = {l: eta * m[l][0] + (1 - eta) * top * m[l][1] for l in LIMITS_W}
    out, best, risen = [], None, 0
    for l in LIMITS_W:
        out.append(l)
        if best is None or cost[l] < cost[best]:
            best, risen = l, 0
        else:
            risen += 1
            if risen >= rises:
                break
    return out


# ---- tests -----------------------------------------------------------------

def test_gpus_lists_the_fake_gpus(tmp, server):
    host = Host(tmp, "gpus", count=2, start_limit_w=275)
    p = host.agent(["gpus", "--format", "json"])
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    gpus = json.loads(out)
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0]["name"] == "Fake GPU F100"
    assert gpus[1]["power_limit_w"] == 275.0
    assert (gpus[0]["min_limit_w"], gpus[0]["max_limit_w"]) == (100.0, 300.0)
    assert gpus[0]["power_draw_w"] == 275.0
    bad = dict(host.env, WATTWISE_NVML_LIB="/nonexistent/libnvidia-ml.so.1")
    p = subprocess.run([AGENT, "gpus"], env=bad, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "needs an NVIDIA GPU" in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_measure_energy_matches_ground_truth(tmp, server):
    host = Host(tmp, "measure", count=2, start_limit_w=250)
    # The ground truth: the fake's counters read by this process right before the
    # agent starts and right after it ends.
    before = fake_energy_j(host)
    p = host.agent(["measure", "--format", "json", "--", sys.executable, TRAIN, "--epochs", "4", "--steps", "50",
                    "--step-time", "0.04"])
    out, err = p.communicate(timeout=60)
    truth_j = fake_energy_j(host) - before
    assert p.returncode == 0, err
    m = json.loads(err.strip().splitlines()[-1])
    rel = abs(m["energy_j"] - truth_j) / truth_j
    print(f"    measure: {m['energy_j']:.1f} J measured, {truth_j:.1f} J ground truth ({rel:.3%}), {m['time_s']:.2f} s")
    assert m["energy_j"] <= truth_j + 0.01
    assert rel < 0.005, (m, truth_j)
    assert abs(m["average_power_w"] - 500) < 5, m
    assert len(m["gpu_energy_j"]) == 2
    assert [round(s["time_s"]) for s in m["samples"]][:3] == [1, 2, 3], m["samples"]
    p = host.agent(["measure", "--", "sh", "-c", "exit 7"])
    p.communicate(timeout=30)
    assert p.returncode == 7


def test_run_energy_matches_ground_truth(tmp, server):
    # Profiling spans epochs (short epochs interrupt windows), so the limit changes
    # during the measured span. The script notes the fake's counters right before
    # each epoch_end event; the agent's cumulative energy in the reports between
    # epoch 1 and the last epoch must match them.
    err, _ = _run_energy_within(Host(tmp, "energy", count=2), server, 0.005)
    assert "energy_source counter (GPU 0 counter, GPU 1 counter)" in err, err


def test_run_on_a_pre_volta_gpu_reports_sampled_energy(tmp, server):
    # No energy counter (NVML: not supported): the agent integrates power sampled
    # every 0.1 s, and on both sides of each limit change.
    host = Host(tmp, "prevolta-run", count=1, fake={"FAKE_NVML_NO_ENERGY": "all", "FAKE_NVML_CC": "6.0"})
    # 3%: the bound while the load steps, as it does here (profiling moves
    # the limit every few steps); the counter's test above holds 0.5%.
    err, bounds = _run_energy_within(host, server, 0.03)
    # Sampled power: never an exact figure.
    assert all(u > 0 for u in bounds), bounds
    assert "energy_source sampled (GPU 0 sampled); power sampled every 0.100 s" in err, err
    assert "(energy_source sampled)" in err, err


def _run_energy_within(host, server, bound):
    proxy = Recorder(server.port)
    proxy.up()
    gt = os.path.join(host.dir, "gt.json")
    job = host.job(os.path.basename(host.dir), max_epochs=5, power={"selector": {"kind": "energy"}, "wait_steps": 1})
    rc, _, err = host.run(proxy.url, job, ["--epochs", "5", "--steps", "25", "--step-time", "0.03",
                                          "--ground-truth", gt])
    proxy.down()
    assert rc == 0, err
    assert "interrupted by the epoch end" in err, err
    with open(gt) as f:
        truth = json.load(f)["epochs_mj"]
    reports = {r["current_epoch"]: r for r in proxy.reports}
    assert sorted(reports) == [1, 2, 3, 4, 5], reports
    print("    per epoch (reported J, truth J):", [(round(reports[e]["energy"] - reports[1]["energy"], 2), round((truth[e - 1] - truth[0]) / 1000, 2)) for e in range(2, 6)])
    measured = reports[5]["energy"] - reports[1]["energy"]
    truth_j = (truth[4] - truth[0]) / 1000
    rel = abs(measured - truth_j) / truth_j
    print(f"    run: {measured:.1f} J reported over epochs 2-5, {truth_j:.1f} J ground truth ({rel:.3%})")
    assert rel < bound, (measured, truth_j)
    # Each report carries the meter's bound on its energy (since the start), and
    # the trial keeps the last report's (issue 23).
    bounds = [reports[e].get("energy_uncertainty_j") for e in range(1, 6)]
    assert all(isinstance(u, float) and u >= 0 for u in bounds), bounds
    print(f"    bounds per epoch: {[round(u, 3) for u in bounds]} J")
    (trial,) = server.get(f"/jobs/{reports[5]['job_id']}/trials")
    assert trial.get("energy_uncertainty_j") == bounds[-1], (trial, bounds)
    return err, bounds


SELECTORS = [
    {"kind": "energy"},
    {"kind": "time"},
    {"kind": "zeus_cost", "eta": 0.5},
    {"kind": "max_slowdown", "factor": 1.1},
]


def test_measure_output_goes_to_the_file(tmp, server):
    host = Host(tmp, "output", count=2)
    out_file = os.path.join(host.dir, "m.json")
    p = host.agent(["measure", "--format", "json", "--output", out_file, "--",
                    sys.executable, "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out == "to stdout\n" and err == "to stderr\n", (out, err)
    with open(out_file) as f:
        m = json.load(f)
    assert m["exit_code"] == 0 and len(m["gpu_energy_j"]) == 2, m
    # The table goes there too; a file that cannot be created stops before the command.
    marker = os.path.join(host.dir, "ran")
    p = host.agent(["measure", "-o", os.path.join(host.dir, "no", "such", "dir"), "--", "touch", marker])
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "--output: cannot create" in err, err
    assert not os.path.exists(marker)
    p = host.agent(["measure", "--help"])
    out, _ = p.communicate(timeout=30)
    assert "written to stderr" in out and "--output" in out and "--metrics" in out, out


def parse_metrics(text):
    """Prometheus/OpenMetrics text: {(name, frozenset(labels.items())): value}."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, _, labels = head.partition("{")
        pairs = {}
        for part in labels.rstrip("}").split('",'):
            if part:
                k, v = part.split("=", 1)
                pairs[k] = v.strip('"')
        series[(name, frozenset(pairs.items()))] = float(value)
    return series


def scrape(port, accept="*/*"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def test_exporter_serves_the_gpus_with_dcgm_labels(tmp, server):
    host = Host(tmp, "exporter", count=2, start_limit_w=250)
    bad = host.agent(["exporter", "--listen", "not an address"])
    _, err = bad.communicate(timeout=30)
    assert bad.returncode != 0 and "--listen" in err and "HOST:PORT" in err, err
    port = free_port()
    p = host.agent(["exporter", "--listen", str(port)])  # a bare port: 127.0.0.1
    try:
        wait_until(lambda: "metrics of 2 GPU(s) at http://127.0.0.1:" in p.stderr.readline(), 30, "the exporter")
        before = fake_energy_j(host)
        ctype, text = scrape(port, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
        after = fake_energy_j(host)
        assert ctype.startswith("application/openmetrics-text"), ctype
        assert text.endswith("# EOF\n") and "# TYPE wattwise_gpu_energy_joules counter" in text, text
        series = parse_metrics(text)
        host_name = socket.gethostname()
        for gpu in (0, 1):
            labels = {"gpu": str(gpu), "UUID": f"GPU-fa4e0000-0000-4000-8000-{gpu:012x}",
                      "modelName": "Fake GPU F100", "Hostname": host_name}
            key = frozenset(labels.items())
            assert series[("wattwise_gpu_power_limit_watts", key)] == 250.0, series
            assert series[("wattwise_gpu_power_usage_watts", key)] == 250.0, series
            assert ("wattwise_gpu_energy_joules_total", key) in series, series
        energy = sum(v for (n, _), v in series.items() if n == "wattwise_gpu_energy_joules_total")
        assert before - 0.01 <= energy <= after + 0.01, (before, energy, after)
        assert not any(n.startswith("wattwise_run") for n, _ in series), "no run, no run series"
        ctype, text = scrape(port)
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        assert "# TYPE wattwise_gpu_energy_joules_total counter" in text, text
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=10)
            raise AssertionError("expected 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert p.returncode == 0, p.stderr.read()
    assert host.limits_w() == [250.0, 250.0]  # the exporter only reads


def test_each_selector_picks_the_cheapest_limit(tmp, server):
    picked = {}
    for i, sel in enumerate(SELECTORS):
        host = Host(tmp, f"sel{i}")
        # Windows of 20 steps (0.6 s): the limits' step times differ by as little as
        # 3% (zeus_cost: 200 W against 250 W), so a short window would let a late
        # read of the events file on a busy machine flip the pick.
        # The first under Zeus's policy (every limit profiled), the others under
        # wattwise's (the default: the profile ends after two costlier limits).
        policy = {"policy": "zeus"} if i == 0 else {}
        job = host.job(f"sel{i}", power={"selector": sel, "profile_steps": 20}, max_epochs=2, **policy)
        rc, out, err = host.run(server.url, job, ["--epochs", "2", "--steps", "120", "--step-time", "0.03"])
        assert rc == 0, err
        want = expected(sel)
        got = optimum_w(err)
        picked[sel["kind"]] = got
        assert got == want, f"{sel}: picked {got} W, the fake makes {want} W cheapest\n{err}"
        # The limit found at start is back.
        assert host.limits_w() == [300.0], host.limits_w()
        assert host.records() == [], host.records()
        # The profile was posted.
        job_id = job_id_of(err)
        profiles = server.get(f"/jobs/{job_id}/profiles")
        assert len(profiles) == 1 and profiles[0]["gpu_model"] == "Fake GPU F100"
        profiled = [m["power_limit"] for m in profiles[0]["measurements"]]
        if i == 0:
            assert profiled == LIMITS_W, profiled
        else:
            least = least_profiled(sel)
            assert profiled == LIMITS_W[:len(profiled)] and len(profiled) >= len(least), (sel, profiled, least)
            if sel["kind"] == "time":
                # Time has no energy bound to widen: 250 and 200 W are slower, done
                # (a step time flipped by a busy machine may add one limit).
                assert len(profiled) <= 4, profiled
    print(f"    picked: {picked}")
    assert len(set(picked.values())) >= 3, picked


def test_profile_is_reused_by_the_next_run(tmp, server):
    host = Host(tmp, "reuse")
    sel = {"kind": "energy"}
    job = host.job("reuse", job_id="reuse-fixed", power={"selector": sel})
    rc, _, err1 = host.run(server.url, job, ["--epochs", "1", "--steps", "60", "--step-time", "0.03"])
    assert rc == 0, err1
    assert "profiling 300 W" in err1 and "posted the power profile" in err1, err1
    rc, _, err2 = host.run(server.url, job, ["--epochs", "1", "--steps", "20", "--step-time", "0.03"])
    assert rc == 0, err2
    assert "reusing the endpoint's power profile" in err2, err2
    assert "profiling" not in err2.replace("power profile", ""), err2
    assert optimum_w(err2) == optimum_w(err1) == expected(sel), (err1, err2)
    assert host.limits_w() == [300.0]


def test_early_stop_kills_the_process_group(tmp, server):
    host = Host(tmp, "stop")
    pids = os.path.join(host.dir, "pids")
    # Accuracy at batch size 64 passes 0.6 at epoch 2: the endpoint stops the run.
    job = host.job("stop", target_metric=0.6, power={"pl_step": 200})
    t = time.monotonic()
    rc, _, err = host.run(server.url, job, ["--epochs", "50", "--steps", "20", "--step-time", "0.05", "--pids", pids])
    assert rc == 0, err
    assert "stop" in err and "converged" in err, err
    assert time.monotonic() - t < 40
    with open(pids) as f:
        main_pid, helper_pid = map(int, f.read().split())
    wait_until(lambda: process_gone(main_pid) and process_gone(helper_pid), 5, "the training group to die")
    assert host.limits_w() == [300.0]


def _start_and_wait_for_profiling(host, server, extra_env=None):
    job = host.job("safety", power={"selector": {"kind": "energy"}})
    pids = os.path.join(host.dir, "pids")
    p = host.agent(["run", "--server", server.url, "--job", job, "--grace", "2", "--",
                    sys.executable, TRAIN, "--epochs", "3", "--steps", "200", "--step-time", "0.03", "--pids", pids],
                   extra_env)
    wait_until(lambda: os.path.exists(pids) and os.path.getsize(pids) > 0, 30, "the training script")
    if extra_env is None:
        wait_until(lambda: host.limits_w()[0] in (250.0, 200.0, 150.0), 30, "profiling below the maximum")
    with open(pids) as f:
        main_pid, helper_pid = map(int, f.read().split())
    return p, main_pid, helper_pid


def test_limit_restored_after_sigterm(tmp, server):
    host = Host(tmp, "sigterm", start_limit_w=275)
    p, main_pid, helper_pid = _start_and_wait_for_profiling(host, server)
    # While a run owns the limits: `gpus` still works, a second `run` is refused.
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    assert json.loads(out)[0]["power_limit_w"] != 275.0
    rc, _, err = host.run(server.url, host.job("second"), ["--epochs", "1", "--steps", "5"])
    assert rc != 0 and "GPU 0" in err and f"owned by another wattwise run (pid {p.pid}" in err, err
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, err)
    assert host.limits_w() == [275.0], (host.limits_w(), err)
    assert host.records() == []
    wait_until(lambda: process_gone(main_pid) and process_gone(helper_pid), 5, "the training group to die")


def test_limit_restored_after_panic(tmp, server):
    host = Host(tmp, "panic", start_limit_w=275)
    p, main_pid, helper_pid = _start_and_wait_for_profiling(host, server, {"WATTWISE_DEBUG_PANIC_AT_STEP": "25"})
    _, err = p.communicate(timeout=30)
    assert p.returncode == 101, (p.returncode, err)
    assert "test panic" in err, err
    assert host.limits_w() == [275.0], (host.limits_w(), err)
    wait_until(lambda: process_gone(main_pid) and process_gone(helper_pid), 5, "the training group to die")


def test_limit_restored_on_next_start_after_sigkill(tmp, server):
    host = Host(tmp, "sigkill", start_limit_w=275)
    p, main_pid, helper_pid = _start_and_wait_for_profiling(host, server)
    os.kill(p.pid, signal.SIGKILL)
    os.killpg(main_pid, signal.SIGKILL)  # the orphaned training group (holds the agent's pipes)
    p.communicate(timeout=30)
    assert host.limits_w() != [275.0]
    assert len(host.records()) == 1
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    assert json.loads(out)[0]["power_limit_w"] == 275.0
    assert json.loads(out)[0]["owner"] is None
    assert host.limits_w() == [275.0]
    assert host.records() == []


def test_token_from_a_file_never_logged(tmp, server):
    token = "s3cret-token-value"
    secured = Server(os.path.join(tmp, "secured.db"), token=token).start()
    try:
        host = Host(tmp, "token")
        job = host.job("token", max_epochs=1, power={"pl_step": 200})
        rc, _, err = host.run(secured.url, job, ["--epochs", "1", "--steps", "5"],
                              agent_args=("--connect-timeout", "1"))
        assert rc != 0 and "401" in err, err
        token_file = os.path.join(host.dir, "token")
        with open(token_file, "w") as f:
            f.write(token + "\n")
        rc, out, err = host.run(secured.url, job, ["--epochs", "1", "--steps", "20"],
                                extra_env={"WATTWISE_TOKEN_FILE": token_file})
        assert rc == 0, err
        assert token not in err and token not in out
        assert "endpoint after epoch 1: stop" in err, err
    finally:
        secured.stop()


def test_permission_denied_is_a_clear_error(tmp, server):
    host = Host(tmp, "deny", deny=True)
    job = host.job("deny")
    rc, _, err = host.run(server.url, job, ["--epochs", "1", "--steps", "5"])
    assert rc != 0
    assert "CAP_SYS_ADMIN" in err, err
    assert "epoch 1" not in err  # the command never started


def epochs_ended(host):
    """Epoch ends the running command wrote to its events file so far."""
    n = 0
    for name in os.listdir(host.state_dir):
        if name.startswith("events-"):
            with open(os.path.join(host.state_dir, name)) as f:
                n = max(n, f.read().count("epoch_end"))
    return n


def test_every_report_arrives_when_the_server_was_down(tmp, server):
    host = Host(tmp, "down")
    proxy = Recorder(server.port)
    proxy.up()
    job = host.job("down", max_epochs=6, power={"pl_step": 200, "selector": {"kind": "time"}})
    p = host.agent(["run", "--server", proxy.url, "--job", job, "--grace", "2", "--",
                    sys.executable, TRAIN, "--epochs", "6", "--steps", "25", "--step-time", "0.04"])
    wait_until(lambda: len(proxy.reports) >= 1, 60, "the first report")
    proxy.down()
    t_down = time.monotonic()
    # Two epochs go by while the endpoint is unreachable (the command's events file
    # in the agent's state folder counts them).
    at_down = epochs_ended(host)
    wait_until(lambda: epochs_ended(host) >= at_down + 2, 60, "two epochs while the endpoint is down")
    proxy.up()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    epochs = [r["current_epoch"] for r in proxy.reports]
    print(f"    reports delivered (epochs, in order): {epochs}; down for {time.monotonic() - t_down:.1f}s")
    assert sorted(set(epochs)) == [1, 2, 3, 4, 5, 6], epochs
    assert epochs == sorted(epochs), epochs
    times = [r["time"] for r in proxy.reports]
    assert times == sorted(times)
    job_id = job_id_of(err)
    trials = server.get(f"/jobs/{job_id}/trials")
    assert trials[0]["status"] != "Dispatched", trials
    assert not any(n.startswith("spool-") for n in os.listdir(host.state_dir))


# ---- a hung endpoint, a flood of events ---------------------------------------

# The agent's documented bound: after the command ends it exits within
# --flush-timeout (default 5 s), 1 s once it got SIGTERM (agent/README.md).
FLUSH_S = 5.0
AFTER_SIGNAL_S = 1.0


def _train_then_note_the_end(host, ended):
    """agent/examples/train.py, then the command's end (CLOCK_MONOTONIC, ns) in `ended`."""
    note = f"import time; open({ended!r}, 'w').write(str(time.monotonic_ns()))"
    train = " ".join([sys.executable, TRAIN, "--epochs", "2", "--steps", "40", "--step-time", "0.02"])
    return ["sh", "-c", f"{train} && {sys.executable} -c \"{note}\""]


def _restored_at_ns(host, start_mw):
    """When the fake last set every GPU back to `start_mw` (its history), ns."""
    segments = read_history(host.history)
    last = {}
    for seg in segments:
        last[seg["gpu"]] = seg
    assert all(seg["limit_mw"] == start_mw for seg in last.values()), last
    return max(seg["at_ns"] for seg in last.values())


def _spools(host):
    return [n for n in os.listdir(host.state_dir) if n.startswith("spool-")]


def test_a_hung_endpoint_neither_throttles_the_gpus_nor_holds_the_agent(tmp, server):
    # The endpoint answers three requests (register, batch size, profiles), then
    # accepts connections and never answers: every report, the profile and the
    # trial's end hang.
    host = Host(tmp, "hung", count=2, start_limit_w=275, history=True)
    job = host.job("hung", job_id="hung-1", max_epochs=10, power={"pl_step": 100, "selector": {"kind": "energy"}})
    results = []
    for label in ("no signal", "SIGTERM after the end"):
        hung = Recorder(server.port, hang_after=3)
        hung.up()
        ended = os.path.join(host.dir, f"ended-{len(results)}")
        p = host.agent(["run", "--server", hung.url, "--job", job, "--grace", "2", "--",
                        *_train_then_note_the_end(host, ended)])
        try:
            wait_until(lambda: os.path.exists(ended) and os.path.getsize(ended) > 0, 60, "the command's end")
            if label != "no signal":
                p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=60)
            exited = time.monotonic_ns()
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            hung.down()
        with open(ended) as f:
            end_ns = int(f.read())
        restored_s = (_restored_at_ns(host, 275_000) - end_ns) / 1e9
        exit_s = (exited - end_ns) / 1e9
        print(f"    {label}: limits restored {restored_s:.3f} s and the agent gone {exit_s:.2f} s "
              f"after the command ended; {hung.received} requests, 3 answered")
        assert hung.received > 3, hung.received
        # SIGTERM may still find the command's shell: it ends by the signal then.
        assert p.returncode in ((0,) if label == "no signal" else (0, 143)), (p.returncode, err)
        assert "power limit set to the optimum" in err, err
        assert restored_s < 1.0, (restored_s, err)
        assert exit_s < (FLUSH_S if label == "no signal" else AFTER_SIGNAL_S) + 1.0, (exit_s, err)
        assert "stay in the spool" in err and "the next run replays them" in err, err
        assert host.limits_w() == [275.0, 275.0] and host.records() == []
        results.append(job_id_of(err))
        # Set aside until the last run (the next run would replay it first, to the
        # same hung endpoint).
        (spool,) = _spools(host)
        os.rename(os.path.join(host.state_dir, spool), os.path.join(host.dir, spool))
    for spool in [n for n in os.listdir(host.dir) if n.startswith("spool-")]:
        os.rename(os.path.join(host.dir, spool), os.path.join(host.state_dir, spool))
    # A later run against a working endpoint replays both runs' reports, profile and
    # trial end before its own.
    proxy = Recorder(server.port)
    proxy.up()
    try:
        rc, _, err = host.run(proxy.url, job, ["--epochs", "1", "--steps", "5", "--step-time", "0.01"])
    finally:
        proxy.down()
    assert rc == 0, err
    assert _spools(host) == [], _spools(host)
    job_id = results[0]
    trials = {t["trial_number"]: t for t in server.get(f"/jobs/{job_id}/trials")}
    replayed = [(m, path) for m, path, _ in proxy.requests]
    for n in (1, 2):
        assert [b for m, path, b in proxy.requests if (m, path) == ("PATCH", "/trials") and b["trial_number"] == n], \
            (n, proxy.requests)
        assert trials[n]["status"] != "Dispatched", trials[n]
        assert sorted(r["current_epoch"] for r in proxy.reports if r["trial_number"] == n) == [1, 2], proxy.reports
    assert ("POST", f"/jobs/{job_id}/profiles") in replayed, replayed
    assert len(server.get(f"/jobs/{job_id}/profiles")) == 1
    assert "replayed" in err, err


def test_a_flood_of_events_keeps_the_agent_small(tmp, server):
    # The script writes MB megabytes of short lines (events and garbage) to the
    # events file as fast as it can; the agent reads them in bounded batches.
    mb = int(os.environ.get("WATTWISE_EVENTS_FLOOD_MB", "40"))
    ceiling_mib = 64
    host = Host(tmp, "flood")
    job = host.job("flood", max_epochs=2, power={"pl_step": 200})
    lines = b"step_begin\nstep_end\nnot an event\n"
    chunks = mb * 2**20 // (len(lines) * 32768)
    flood = (
        "import os\n"
        f"chunk = {lines!r} * 32768\n"
        "with open(os.environ['WATTWISE_EVENTS'], 'ab') as f:\n"
        f"    for _ in range({chunks}):\n"
        "        f.write(chunk)\n"
        "    f.write(b'epoch_end 0.5\\n')\n"
    )
    t = time.monotonic()
    p = host.agent(["run", "--server", server.url, "--job", job, "--grace", "2", "--", sys.executable, "-c", flood])
    peak_kib = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                hwm = [l for l in f if l.startswith("VmHWM:")]
            peak_kib = max(peak_kib, int(hwm[0].split()[1])) if hwm else peak_kib
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
        if peak_kib > 4 * ceiling_mib * 1024:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise AssertionError(f"the agent passed {peak_kib / 1024:.0f} MiB reading {mb} MB of events; killed")
        if time.monotonic() - t > 300:
            os.killpg(p.pid, signal.SIGKILL)
            raise AssertionError("the agent took over 300 s")
        time.sleep(0.02)
    _, err = p.communicate()
    took = time.monotonic() - t
    assert p.returncode == 0, err
    # The agent's own last word on its peak (VmHWM as it ends), when it says it.
    logged = [l for l in err.splitlines() if "peak memory" in l]
    own_mib = float(logged[-1].rsplit("peak memory ", 1)[1].split()[0]) if logged else 0
    peak_mib = max(peak_kib / 1024, own_mib)
    print(f"    {mb} MB of event lines: agent peak memory {peak_mib:.1f} MiB (ceiling {ceiling_mib}), {took:.1f} s")
    assert peak_mib < ceiling_mib, (peak_mib, err)
    assert "after 1 epoch(s)" in err, err
    bad = [l for l in err.splitlines() if "bad event line(s)" in l]
    assert bad and int(bad[0].split("ignored ")[1].split()[0]) == chunks * 32768, (bad, err)


# ---- the job's GPUs, several runs per host, GPUs without an energy counter ----

def fake_uuid(i):
    """The fake's UUID of GPU i (tests/fake-nvml docs)."""
    return f"GPU-fa4e0000-0000-4000-8000-{i:012x}"


def fake_mig_uuid(i, j):
    return f"MIG-fa4e00{i:02x}-00{j:02x}-4000-8000-000000000000"


def measure_json(host, args, env=None, timeout=60):
    p = host.agent(["measure", "--format", "json", *args], env)
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return json.loads(err.strip().splitlines()[-1]), err


def measured_gpus(host, env=None, flag=()):
    m, _ = measure_json(host, [*flag, "--", "true"], env)
    return [g["index"] for g in m["gpus"]]


def test_cuda_visible_devices_limits_and_measures_only_those_gpus(tmp, server):
    for form, cvd in (("indices", "2,5"), ("uuids", f"{fake_uuid(2)},{fake_uuid(5)}")):
        host = Host(tmp, f"cvd-{form}", count=8, start_limit_w=275)
        env = {"CUDA_VISIBLE_DEVICES": cvd}
        before = host.fake_gpus()
        job = host.job(f"cvd-{form}", max_epochs=2, power={"selector": {"kind": "energy"}})
        rc, _, err = host.run(server.url, job, ["--epochs", "2", "--steps", "40", "--step-time", "0.02"], extra_env=env)
        assert rc == 0, err
        assert "GPUs [2, 5] (NVML indices, from CUDA_VISIBLE_DEVICES)" in err, err
        after = host.fake_gpus()
        for i in range(8):
            if i in (2, 5):
                # Profiled, then restored: set at least twice.
                assert after[i]["since_ns"] != before[i]["since_ns"], (form, i, err)
            else:
                # Never set: the fake's record of the last change is untouched.
                assert after[i] == before[i], (form, i, before[i], after[i])
        assert host.limits_w() == [275.0] * 8, host.limits_w()
        profiles = server.get(f"/jobs/{job_id_of(err)}/profiles")
        assert len(profiles) == 1, profiles
        assert host.records() == []
        # measure: the same two GPUs. The truth is read before the agent starts and
        # after it ends, so it also holds the agent's start and exit (tens of ms).
        t0 = host.truth_mj([2, 5])
        m, _ = measure_json(host, ["--", sys.executable, "-c", "import time; time.sleep(2)"], env)
        t1 = host.truth_mj([2, 5])
        assert [(g["index"], g["uuid"], g["energy_source"]) for g in m["gpus"]] == [
            (2, fake_uuid(2), "counter"), (5, fake_uuid(5), "counter")], m
        truth_j = (sum(t1) - sum(t0)) / 1000
        assert m["energy_j"] <= truth_j + 0.01 and (truth_j - m["energy_j"]) / truth_j < 0.03, (m, truth_j)
        print(f"    {form}: run and measure on GPUs 2 and 5 only; measure {m['energy_j']:.1f} J, truth {truth_j:.1f} J")


def test_cuda_order_nvidia_visible_devices_flag_and_mig(tmp, server):
    # GPU 0 is older (compute capability 6.0): CUDA's default order puts it last.
    host = Host(tmp, "order", count=8, start_limit_w=275,
                fake={"FAKE_NVML_CC": "6.0,8.0", "FAKE_NVML_MIG": "6:2"})
    cuda = lambda v, **more: dict({"CUDA_VISIBLE_DEVICES": v}, **more)
    assert measured_gpus(host, cuda("0")) == [1]
    assert measured_gpus(host, cuda("7")) == [0]
    assert measured_gpus(host, cuda("0", CUDA_DEVICE_ORDER="PCI_BUS_ID")) == [0]
    assert measured_gpus(host, cuda("0"), flag=("--gpus", "0")) == [0]  # --gpus: NVML's numbering
    assert measured_gpus(host, {"NVIDIA_VISIBLE_DEVICES": "3,4"}) == [3, 4]
    assert measured_gpus(host, {"NVIDIA_VISIBLE_DEVICES": "all"}) == list(range(8))
    assert measured_gpus(host) == list(range(8))
    # CUDA stops at the first entry that names no GPU, and says so.
    m, err = measure_json(host, ["--", "true"], cuda("1,9,2"))
    assert [g["index"] for g in m["gpus"]] == [2] and 'CUDA ignores "9"' in err, err
    for empty in ("", "-1"):
        p = host.agent(["measure", "--", "true"], cuda(empty))
        _, err = p.communicate(timeout=30)
        assert p.returncode != 0 and "gives this command no GPU" in err, err
    # MIG: GPU 6 has two instances; one of them stands for GPU 6.
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    infos = json.loads(out)
    assert infos[6]["mig_mode"] == "enabled" and infos[6]["mig_instances"] == [fake_mig_uuid(6, 0), fake_mig_uuid(6, 1)]
    assert infos[0]["mig_mode"] == "unsupported" and infos[1]["mig_mode"] == "disabled"
    assert [i["uuid"] for i in infos] == [fake_uuid(i) for i in range(8)]
    assert measured_gpus(host, cuda(fake_mig_uuid(6, 1))) == [6]
    # A run given one instance may not change the whole GPU's limit.
    before = host.fake_gpus()
    rc, _, err = host.run(server.url, host.job("mig"), ["--epochs", "1", "--steps", "5"],
                          extra_env=cuda(fake_mig_uuid(6, 1)))
    assert rc != 0 and "GPU 6" in err and "MIG instances" in err and "given 1 of its 2" in err, err
    assert host.fake_gpus() == before and host.records() == []


def _start_run(host, server, job, cvd, epochs, steps, pids=None):
    extra = ["--pids", pids] if pids else []
    return host.agent(["run", "--server", server.url, "--job", job, "--grace", "2", "--", sys.executable, TRAIN,
                       "--epochs", str(epochs), "--steps", str(steps), "--step-time", "0.03", *extra],
                      {"CUDA_VISIBLE_DEVICES": cvd})


def _owners(host):
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    return [i["owner"]["pid"] if i["owner"] else None for i in json.loads(out)]


def test_runs_on_disjoint_gpus_share_a_host(tmp, server):
    host = Host(tmp, "share", count=8, start_limit_w=275)
    job = host.job("share", power={"selector": {"kind": "energy"}})
    a = _start_run(host, server, job, "0,1", 2, 100)
    b = _start_run(host, server, job, "2,3", 2, 100)
    wait_until(lambda: len(host.records()) == 4, 30, "both runs to own their GPUs")
    assert _owners(host) == [a.pid, a.pid, b.pid, b.pid, None, None, None, None]
    # A third run asking for an owned GPU is refused, naming it and its owner,
    # before changing anything (GPU 4, listed first, is untouched).
    before4 = host.fake_gpus()[4]
    rc, _, err = host.run(server.url, job, ["--epochs", "1", "--steps", "5"], extra_env={"CUDA_VISIBLE_DEVICES": "4,1"})
    assert rc != 0 and f"GPU 1 ({fake_uuid(1)}) is owned by another wattwise run (pid {a.pid}, job share)" in err, err
    assert host.fake_gpus()[4] == before4
    # measure still works on owned GPUs.
    m, _ = measure_json(host, ["--", "true"], {"CUDA_VISIBLE_DEVICES": "0,2"})
    assert [g["index"] for g in m["gpus"]] == [0, 2]
    # Concurrent starts on one free GPU: exactly one owns it, the others are refused.
    racers = [_start_run(host, server, job, "6", 1, 30) for _ in range(4)]
    results = [(r.pid, r.wait(timeout=120), r.stderr.read()) for r in racers]
    winners = [pid for pid, rc, _ in results if rc == 0]
    refused = [e for _, rc, e in results if rc != 0]
    assert len(winners) == 1, results
    assert all("GPU 6" in e and "owned by another wattwise run" in e for e in refused), refused
    print(f"    {len(racers)} concurrent starts on GPU 6: {len(winners)} ran, {len(refused)} refused")
    for p in (a, b):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "power limit set to the optimum" in err, err
    assert host.limits_w() == [275.0] * 8 and host.records() == []


def test_sigkill_restores_only_the_dead_runs_gpus(tmp, server):
    host = Host(tmp, "kill", count=8, start_limit_w=275)
    job = host.job("kill", power={"selector": {"kind": "energy"}})
    pids = os.path.join(host.dir, "pids")
    a = _start_run(host, server, job, "0,1", 3, 200, pids)
    b = _start_run(host, server, job, "2,3", 2, 100)
    wait_until(lambda: os.path.exists(pids) and os.path.getsize(pids) > 0, 30, "run A's training script")
    wait_until(lambda: host.limits_w()[0] != 275.0 and len(host.records()) == 4, 30, "run A profiling")
    with open(pids) as f:
        main_pid = int(f.read().split()[0])
    os.kill(a.pid, signal.SIGKILL)
    os.killpg(main_pid, signal.SIGKILL)
    a.communicate(timeout=30)
    assert host.limits_w()[:2] != [275.0, 275.0]
    # The next start (a run on GPU 4) restores A's GPUs and leaves B's alone.
    b_records = [r for r in host.records() if "000000000002" in r or "000000000003" in r]
    rc, _, err = host.run(server.url, job, ["--epochs", "1", "--steps", "20"], extra_env={"CUDA_VISIBLE_DEVICES": "4"})
    assert rc == 0, err
    assert "restored the power limits a killed run left: [(0, 275000), (1, 275000)]" in err, err
    assert host.limits_w()[:2] == [275.0, 275.0]
    assert [r for r in host.records()] == b_records and len(b_records) == 2
    assert _owners(host)[2:4] == [b.pid, b.pid]
    _, err = b.communicate(timeout=120)
    assert b.returncode == 0, err
    assert host.limits_w() == [275.0] * 8 and host.records() == []


def test_pre_volta_gpu_is_measured_by_sampling(tmp, server):
    # GPU 3 is a P100-like GPU: compute capability 6.0, no energy counter.
    fake = {"FAKE_NVML_CC": "8.0,8.0,8.0,6.0,8.0", "FAKE_NVML_NO_ENERGY": "3"}
    host = Host(tmp, "prevolta", count=8, start_limit_w=250, fake=fake)
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    assert [i["energy_source"] for i in json.loads(out)] == ["counter"] * 3 + ["sampled"] + ["counter"] * 4
    # GPUs 3 and 4 run the same load under the same limit, and the fake's counter
    # is its exact ground-truth integral: GPU 4's counter over the agent's own
    # window is the truth for GPU 3 over that same window. (The fake's truth read
    # around the agent also holds its start and exit, tens of ms.)
    for label, steps, secs, bound in (("constant load", None, 5, 0.01),
                                      ("stepping load", "300:1.0,120:1.5,220:0.7", 8, 0.03)):
        if steps:
            host.env["FAKE_NVML_LOAD_STEPS"] = steps
        t0 = host.truth_mj([3, 4])
        m, _ = measure_json(host, ["--gpus", "3,4", "--", sys.executable, "-c", f"import time; time.sleep({secs})"])
        t1 = host.truth_mj([3, 4])
        assert [(g["index"], g["energy_source"]) for g in m["gpus"]] == [(3, "sampled"), (4, "counter")], m
        assert m["energy_source"] == "mixed", m
        sampled, counter = m["gpus"][0]["energy_j"], m["gpus"][1]["energy_j"]
        outer = [(b - a) / 1000 for a, b in zip(t0, t1)]
        rel = abs(sampled - counter) / counter
        print(f"    {label}, {secs} s: GPU 3 sampled {sampled:.2f} J, GPU 4 counter {counter:.2f} J ({rel:.3%}); "
              f"truth around the agent {outer[0]:.2f} J")
        assert rel < bound, (label, m)
        assert abs(outer[0] - outer[1]) < 1e-3 * outer[0], outer
        assert counter <= outer[1] + 0.01 and (outer[1] - counter) / outer[1] < 0.02, (counter, outer)
    t, _ = measure_json(host, ["--gpus", "3", "--", "true"])
    assert "sampled" == t["energy_source"]


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    return run_suite(tests, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
