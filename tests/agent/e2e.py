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
    host = Host(tmp, "energy", count=2)
    proxy = Recorder(server.port)
    proxy.up()
    gt = os.path.join(host.dir, "gt.json")
    job = host.job("energy", max_epochs=5, power={"selector": {"kind": "energy"}, "wait_steps": 1})
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
    assert rel < 0.005, (measured, truth_j)


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
        job = host.job(f"sel{i}", power={"selector": sel}, max_epochs=2)
        rc, out, err = host.run(server.url, job, ["--epochs", "2", "--steps", "60", "--step-time", "0.03"])
        assert rc == 0, err
        want = expected(sel)
        got = optimum_w(err)
        picked[sel["kind"]] = got
        assert got == want, f"{sel}: picked {got} W, the fake makes {want} W cheapest\n{err}"
        # The limit found at start is back.
        assert host.limits_w() == [300.0], host.limits_w()
        assert not os.path.exists(os.path.join(host.state_dir, "power-limits.json"))
        # The profile was posted.
        job_id = job_id_of(err)
        profiles = server.get(f"/jobs/{job_id}/profiles")
        assert len(profiles) == 1 and profiles[0]["gpu_model"] == "Fake GPU F100"
        assert [m["power_limit"] for m in profiles[0]["measurements"]] == LIMITS_W
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
    assert rc != 0 and "another wattwise agent" in err, err
    os.kill(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, (p.returncode, err)
    assert host.limits_w() == [275.0], (host.limits_w(), err)
    assert not os.path.exists(os.path.join(host.state_dir, "power-limits.json"))
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
    assert os.path.exists(os.path.join(host.state_dir, "power-limits.json"))
    g = host.agent(["gpus", "--format", "json"])
    out, err = g.communicate(timeout=30)
    assert g.returncode == 0, err
    assert json.loads(out)[0]["power_limit_w"] == 275.0
    assert host.limits_w() == [275.0]
    assert not os.path.exists(os.path.join(host.state_dir, "power-limits.json"))


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
    time.sleep(4)  # epochs go by while the endpoint is unreachable
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


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    return run_suite(tests, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
