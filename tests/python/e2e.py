#!/usr/bin/env python3
"""End-to-end tests of the `wattwise` Python package and of the agent's Prometheus
metrics, with real parts only.

- Real training loops on the CPU (Debian's PyTorch): agent/examples/train_torch.py
  (plain PyTorch), train_hf.py (a Hugging Face Trainer with a tiny BERT built from
  a config) and train_lightning.py (Lightning), each under `wattwise run` with the
  fake NVML (tests/fake-nvml) and a real `wattwise-server`. Each must report every
  epoch with the metric the script computed, at the batch size the endpoint chose,
  and the server's trials export must hold the run's result; the profile the agent
  posts shows that the step events arrived.
- A real Prometheus (Debian's) on a free 127.0.0.1 port, in its own process group,
  scrapes `wattwise run --metrics` and `wattwise exporter` during a run; its HTTP
  API must give the run's labels and an energy counter whose increase between its
  first and last sample matches the fake's ground truth at those instants (the
  fake's history of energy segments) within 1%.
- Real torchrun (Debian's) starting the agent as its worker (`--no_python`) on two
  "nodes" on 127.0.0.1 with static rendezvous and its default `--rdzv_id` (`none`):
  refused before any GPU is touched.

Environment: WATTWISE_BIN, FAKE_NVML_LIB, WATTWISE_SERVER_BIN (run.sh sets them);
run with the suite's virtual environment's python. Usage: e2e.py [NAME_SUBSTRING...]
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from agent_harness import (  # noqa: E402
    AGENT,
    ROOT,
    TRAIN,
    Host,
    Recorder,
    free_port,
    history_energy_j,
    job_id_of,
    read_history,
    stop_group,
    wait_until,
)

EXAMPLES = os.path.join(ROOT, "agent", "examples")


def check_training_run(tmp, server, name, script, epochs, batch_size, timeout=180):
    """Runs `script` under the agent and checks what reached the endpoint."""
    host = Host(tmp, name)
    proxy = Recorder(server.port)
    proxy.up()
    try:
        # The target is out of reach: the run goes to max_epochs, every epoch reported.
        job = host.job(name, batch_sizes=[batch_size], default_batch_size=batch_size, target_metric=2.0,
                       max_epochs=epochs, power={"wait_steps": 1, "warmup_steps": 1, "profile_steps": 3, "pl_step": 100})
        seen = os.path.join(host.dir, "metrics.json")
        command = [sys.executable, os.path.join(EXAMPLES, script), "--epochs", str(epochs), "--metrics-out", seen]
        rc, out, err = host.run_command(proxy.url, job, command, timeout=timeout)
    finally:
        proxy.down()
    assert rc == 0, f"exit {rc}\nstdout:\n{out}\nstderr:\n{err}"
    assert f"batch size {batch_size}" in out, out
    with open(seen) as f:
        computed = json.load(f)
    reports = sorted(proxy.reports, key=lambda r: r["current_epoch"])
    epochs_reported = [r["current_epoch"] for r in reports]
    metrics_reported = [r["metric"] for r in reports]
    print(f"    {script}: batch size {batch_size}, epochs {epochs_reported}, metrics {metrics_reported}")
    assert epochs_reported == list(range(1, epochs + 1)), reports
    assert metrics_reported == computed, (metrics_reported, computed)
    assert all(r["batch_size"] == batch_size for r in reports), reports
    # The trials export holds the run's result: the last report's time and energy.
    job_id = job_id_of(err)
    trials = server.get(f"/jobs/{job_id}/trials")
    assert len(trials) == 1, trials
    t = trials[0]
    assert (t["batch_size"], t["status"], t["converged"]) == (batch_size, "Succeeded", False), t
    assert (t["time"], t["energy"]) == (reports[-1]["time"], reports[-1]["energy"]), (t, reports[-1])
    # The step events drove profiling: every limit was measured and posted.
    profiles = server.get(f"/jobs/{job_id}/profiles")
    assert [m["power_limit"] for m in profiles[0]["measurements"]] == [300, 200, 100], profiles
    assert "power limit set to the optimum" in err, err
    for line in err.splitlines():
        if "profile window" in line or " W: " in line:
            print(f"      {line}")


def test_plain_pytorch_loop(tmp, server):
    # The default 4,096 examples: 32 steps an epoch. A busy CPU's steps are too alike
    # to tell the limits apart, so the meter's bounds lengthen the windows as far as
    # the epoch leaves room (the core's rule); the profile is done within two epochs.
    check_training_run(tmp, server, "torch", "train_torch.py", epochs=3, batch_size=128)


def test_hugging_face_trainer(tmp, server):
    check_training_run(tmp, server, "hf", "train_hf.py", epochs=3, batch_size=16)


def test_lightning_trainer(tmp, server):
    check_training_run(tmp, server, "lightning", "train_lightning.py", epochs=3, batch_size=32)


# ---- Prometheus --------------------------------------------------------------

class Prometheus:
    """Debian's Prometheus on a free 127.0.0.1 port, in its own process group,
    scraping `targets` ({job name: port}) every 250 ms."""

    def __init__(self, workdir, targets):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        os.makedirs(workdir)
        lines = ["global:", "  scrape_interval: 250ms", "  scrape_timeout: 250ms", "scrape_configs:"]
        for job, port in targets.items():
            lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: ['127.0.0.1:{port}']"]
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError("prometheus is not installed (tests/python/run.sh installs Debian's)")
        self.log = open(os.path.join(workdir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until(self._ready, 60, "Prometheus /-/ready")
        except AssertionError:
            self.stop()
            raise

    def _ready(self):
        if self.proc.poll() is not None:
            with open(self.log.name) as f:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{f.read()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql):
        """An instant query (now): the result list of the HTTP API's answer."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        stop_group(self.proc)
        self.log.close()


def wall_minus_monotonic_ns():
    """CLOCK_REALTIME - CLOCK_MONOTONIC, ns (to place Prometheus's timestamps on the
    fake's clock), from the tightest of a few paired readings."""
    best = None
    for _ in range(20):
        m0 = time.monotonic_ns()
        w = time.time_ns()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, w - (m0 + m1) // 2)
    return best[1]


def check_energy(prom, job, host, offset_ns):
    """The counter's increase between Prometheus's first and last sample of each GPU
    of `job` against the fake's ground truth at those instants; returns the sums."""
    series = prom.query(f'wattwise_gpu_energy_joules_total{{job="{job}"}}[10m]')
    assert len(series) == 2, series
    history = read_history(host.history)
    scraped = truth = 0.0
    for s in series:
        gpu = int(s["metric"]["gpu"])
        (t0, v0), (t1, v1) = s["values"][0], s["values"][-1]
        assert len(s["values"]) >= 8, f"{job}: only {len(s['values'])} samples"
        at = [round(float(t) * 1e9) - offset_ns for t in (t0, t1)]
        scraped += float(v1) - float(v0)
        truth += history_energy_j(history, gpu, at[1]) - history_energy_j(history, gpu, at[0])
    rel = abs(scraped - truth) / truth
    print(f"    {job}: {scraped:.1f} J between its first and last scrape, {truth:.1f} J ground truth ({rel:.3%})")
    assert rel < 0.01, (job, scraped, truth)
    return scraped, truth


def test_prometheus_scrapes_the_agent_during_a_run(tmp, server):
    host = Host(tmp, "prom", count=2, start_limit_w=300, history=True)
    agent_port, exporter_port = free_port(), free_port()
    prom = Prometheus(os.path.join(tmp, "prometheus"), {"agent": agent_port, "exporter": exporter_port})
    exporter = None
    try:
        exporter = host.agent(["exporter", "--listen", f"127.0.0.1:{exporter_port}"])
        wait_until(lambda: prom.query('up{job="exporter"} == 1'), 30, "Prometheus to scrape the exporter")
        job = host.job("prom", max_epochs=3, power={"selector": {"kind": "energy"}})
        # train.py's steps take as long as the fake GPU's limit makes them, so
        # profiling lasts seconds and the limits change while Prometheus scrapes.
        rc, _, err = host.run(server.url, job, ["--epochs", "3", "--steps", "60", "--step-time", "0.03"],
                              agent_args=("--metrics", str(agent_port)))
        assert rc == 0, err
        assert f"metrics at http://127.0.0.1:{agent_port}/metrics" in err, err
        job_id = job_id_of(err)
        offset = wall_minus_monotonic_ns()

        # The run's labels, on every run series.
        run = {"job_id": job_id, "trial_number": "1", "Hostname": socket.gethostname()}
        got = prom.query("wattwise_run_batch_size[10m]")
        assert len(got) == 1, got
        assert {k: v for k, v in got[0]["metric"].items() if k in run} == run, got
        assert {v for _, v in got[0]["values"]} == {"64"}, got
        # Epochs as they were reported (the last one may end with the command,
        # between two scrapes).
        got = prom.query(f'wattwise_run_epochs{{job_id="{job_id}"}}[10m]')
        epochs = [int(v) for _, v in got[0]["values"]]
        assert epochs == sorted(epochs) and {0, 1, 2} <= set(epochs) <= {0, 1, 2, 3}, epochs
        profiling = prom.query(f'max_over_time(wattwise_run_power_state{{state="profiling",job_id="{job_id}"}}[10m])')
        assert profiling and float(profiling[0]["value"][1]) == 1, profiling
        done = prom.query(f'last_over_time(wattwise_run_power_state{{state="done",job_id="{job_id}"}}[10m])')
        assert done and float(done[0]["value"][1]) == 1, done
        gpus = prom.query(f'last_over_time(wattwise_run_gpu{{job_id="{job_id}"}}[10m])')
        assert sorted(g["metric"]["gpu"] for g in gpus) == ["0", "1"], gpus
        # The GPU series: dcgm-exporter's labels; the limits profiling went through.
        for g in prom.query('last_over_time(wattwise_gpu_energy_joules_total{job="agent"}[10m])'):
            m = g["metric"]
            assert m["UUID"] == f"GPU-fa4e0000-0000-4000-8000-{int(m['gpu']):012x}", m
            assert (m["modelName"], m["Hostname"]) == ("Fake GPU F100", run["Hostname"]), m
        lowest = prom.query('min_over_time(wattwise_gpu_power_limit_watts{job="agent"}[10m])')
        assert sorted(float(s["value"][1]) for s in lowest) == [100.0, 100.0], lowest

        # The energy counter against the fake's ground truth.
        check_energy(prom, "agent", host, offset)
        check_energy(prom, "exporter", host, offset)
    finally:
        if exporter is not None:
            stop_group(exporter)
        prom.stop()


def test_torchrun_default_rdzv_id_is_refused_before_any_gpu(tmp, server):
    # Classic multi-node torchrun, as PyTorch's docs show it (static rendezvous,
    # --rdzv_id left at its default): two "nodes" on 127.0.0.1, each starting the
    # agent as its worker. Every worker of every recurrence of the job gets
    # TORCHELASTIC_RUN_ID=none, which cannot tell one run from the next: the agent
    # refuses it, naming --rdzv_id and --run-id, before it touches a GPU.
    hosts = [Host(tmp, f"trun{rank}", count=2, start_limit_w=275, history=True) for rank in range(2)]
    port = free_port()
    procs = []
    for rank, host in enumerate(hosts):
        job = host.job("trun", job_id="trun-1")
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                    "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}", "--no_python"]
        agent = [AGENT, "run", "--server", server.url, "--job", job, "--", sys.executable, TRAIN,
                 "--epochs", "1", "--steps", "5"]
        procs.append(subprocess.Popen(torchrun + agent, env=host.env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    for rank, (p, (_, err), host) in enumerate(zip(procs, results, hosts)):
        refusal = [line for line in err.splitlines() if line.startswith("wattwise: --run-id:")]
        assert p.returncode != 0 and refusal, (rank, p.returncode, err)
        assert '"none"' in refusal[0] and "--rdzv_id" in refusal[0], refusal
        print(f"    node {rank}: {refusal[0][:110]}...")
        # No GPU touched: the fake's history holds only its start; no record.
        assert len(read_history(host.history)) == 2 and host.limits_w() == [275.0, 275.0], rank
        assert not os.path.exists(host.state_dir) or host.records() == [], rank
    # Nothing reached the endpoint.
    try:
        server.get("/jobs/trun-1/trials")
        raise AssertionError("the job was registered")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e


def main():
    from agent_harness import run_suite

    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    return run_suite(tests, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
