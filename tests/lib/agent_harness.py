"""Shared parts of the agent's end-to-end suites (tests/agent, tests/python): the
real `wattwise-server` on a free 127.0.0.1 port in its own process group, a
recording proxy in front of it, and a fake GPU host (the fake NVML's state, the
agent's state directory, job files, running the agent).

Environment: WATTWISE_BIN, FAKE_NVML_LIB, WATTWISE_SERVER_BIN (the suites' run.sh
set them). Standard library only.
"""

import ctypes
import glob
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "agent", "examples", "train.py")
AGENT = os.environ["WATTWISE_BIN"]
FAKE = os.environ["FAKE_NVML_LIB"]
SERVER_BIN = os.environ["WATTWISE_SERVER_BIN"]

LOAD_W = 300
KNEE_W = 200


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_group(proc, grace=10):
    """Stops the process group `proc` leads (started with start_new_session):
    SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Server:
    """wattwise-server on a free port, in its own process group."""

    def __init__(self, db, port=None, token=None):
        self.token = token
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.log = open(self.db + ".log", "a")
        env = dict(os.environ)
        env.pop("WATTWISE_TOKEN", None)
        if self.token:
            env["WATTWISE_TOKEN"] = self.token
        self.proc = subprocess.Popen(
            [SERVER_BIN, "--listen", f"127.0.0.1:{self.port}", "--db", self.db],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._healthy, 30, "wattwise-server /healthz")
        return self

    def _healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc:
            stop_group(self.proc)
        self.proc = None

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            return json.loads(r.read())


class Recorder:
    """A forwarding proxy in front of the server that records every POST /report
    it delivers, and that can be taken down (connection refused) and back up.
    With `hang_after=N` it forwards N requests, then accepts connections and never
    answers (until `down`)."""

    def __init__(self, upstream_port, hang_after=None):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reports = []
        # Every POST answered 2xx: (path, body), e.g. the run routes' host reports.
        self.posts = []
        # Every request answered 2xx: (method, path, body or None).
        self.requests = []
        self.hang_after = hang_after
        self.received = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.httpd = None

    def up(self):
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def forward(self):
                with rec.lock:
                    rec.received += 1
                    hang = rec.hang_after is not None and rec.received > rec.hang_after
                if hang:
                    rec.release.wait(600)
                    self.close_connection = True
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                conn = http.client.HTTPConnection("127.0.0.1", rec.upstream_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if self.command == "POST" and self.path == "/report" and resp.status == 200:
                    rec.reports.append(json.loads(body))
                if self.command == "POST" and body and 200 <= resp.status < 300:
                    rec.posts.append((self.path, json.loads(body)))
                if 200 <= resp.status < 300:
                    rec.requests.append((self.command, self.path, json.loads(body) if body else None))
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type") or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = forward

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        http.server.ThreadingHTTPServer.daemon_threads = True
        self.release.clear()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def down(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_agent(p, timeout):
    """Waits for agent process `p`: (exit code, stdout, stderr). Past `timeout`
    seconds it kills the agent's group and fails with its stderr."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        _, err = p.communicate()
        raise AssertionError(f"agent timed out; stderr:\n{err}")
    return p.returncode, out, err


class Host:
    """One fake GPU host: a state dir for the agent and a state file for the fake."""

    def __init__(self, tmp, name, count=1, start_limit_w=None, deny=False, history=False, fake=None):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir)
        self.state_dir = os.path.join(self.dir, "agent-state")
        self.fake_state = os.path.join(self.dir, "fake.json")
        self.env = dict(os.environ)
        self.env.update(
            WATTWISE_NVML_LIB=FAKE,
            WATTWISE_STATE_DIR=self.state_dir,
            FAKE_NVML_STATE=self.fake_state,
            FAKE_NVML_COUNT=str(count),
            FAKE_NVML_LOAD=str(LOAD_W),
            FAKE_NVML_KNEE=str(KNEE_W),
        )
        self.env.pop("WATTWISE_TOKEN", None)
        for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
            self.env.pop(var, None)
        self.env.update(fake or {})
        if deny:
            self.env["FAKE_NVML_DENY"] = "1"
        # The fake's energy segments, to know its counter at any past instant.
        self.history = os.path.join(self.dir, "fake-history.jsonl") if history else None
        if history:
            self.env["FAKE_NVML_HISTORY"] = self.history
        if start_limit_w is not None:
            now = time.monotonic_ns()
            gpus = [{"limit_mw": start_limit_w * 1000, "energy_mj": 0.0, "since_ns": now} for _ in range(count)]
            with open(self.fake_state, "w") as f:
                json.dump({"gpus": gpus}, f)
            if history:
                with open(self.history, "w") as f:
                    for i, g in enumerate(gpus):
                        seg = {"gpu": i, "at_ns": now, "energy_mj": 0.0, "limit_mw": g["limit_mw"]}
                        f.write(json.dumps(seg) + "\n")

    def limits_w(self):
        with open(self.fake_state) as f:
            return [g["limit_mw"] / 1000 for g in json.load(f)["gpus"]]

    def fake_gpus(self):
        with open(self.fake_state) as f:
            return json.load(f)["gpus"]

    def records(self):
        """The agent's GPU ownership records (gpu-<UUID>.json) in its state dir."""
        return sorted(glob.glob(os.path.join(self.state_dir, "gpu-*.json")))

    def truth_mj(self, indices):
        """The fake's own ground truth for GPUs `indices` (energy since its state
        was created, mJ, exact), from `fakeNvmlGroundTruthEnergy` in the fake
        library, loaded into this process with this host's FAKE_NVML_* settings."""
        global _FAKE_LIB
        if _FAKE_LIB is None:
            _FAKE_LIB = ctypes.CDLL(FAKE)
            _FAKE_LIB.fakeNvmlGroundTruthEnergy.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_double)]
        saved = {k: v for k, v in os.environ.items() if k.startswith("FAKE_NVML_")}
        for k in saved:
            del os.environ[k]
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("FAKE_NVML_")})
        try:
            assert _FAKE_LIB.nvmlInit_v2() == 0
            out = []
            for i in indices:
                v = ctypes.c_double()
                assert _FAKE_LIB.fakeNvmlGroundTruthEnergy(i, ctypes.byref(v)) == 0
                out.append(v.value)
            _FAKE_LIB.nvmlShutdown()
            return out
        finally:
            for k in [k for k in os.environ if k.startswith("FAKE_NVML_")]:
                del os.environ[k]
            os.environ.update(saved)

    def job(self, name, **fields):
        power = fields.pop("power", {})
        lines = []
        base = dict(job_id_prefix=name, batch_sizes=[64], default_batch_size=64, target_metric=0.99, max_epochs=100)
        base.update(fields)
        for k, v in base.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("[power]")
        settings = dict(wait_steps=5, warmup_steps=2, profile_steps=8, pl_step=50)
        settings.update(power)
        for k, v in settings.items():
            if k == "selector":
                inner = ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items())
                lines.append(f"selector = {{ {inner} }}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
        path = os.path.join(self.dir, f"{name}.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def agent(self, args, extra_env=None, **kw):
        env = dict(self.env)
        env.update(extra_env or {})
        return subprocess.Popen(
            [AGENT] + args,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            **kw,
        )

    def run(self, server_url, job, train_args, extra_env=None, timeout=120, agent_args=()):
        """`wattwise run` of agent/examples/train.py with `train_args`: (exit code, stdout, stderr)."""
        command = [sys.executable, TRAIN, *train_args]
        return self.run_command(server_url, job, command, extra_env, timeout, agent_args)

    def run_command(self, server_url, job, command, extra_env=None, timeout=120, agent_args=()):
        """`wattwise run` of `command`: (exit code, stdout, stderr)."""
        p = self.agent(
            ["run", "--server", server_url, "--job", job, "--grace", "2", *agent_args, "--", *command],
            extra_env,
        )
        return wait_agent(p, timeout)


_FAKE_LIB = None


def job_id_of(stderr):
    for line in stderr.splitlines():
        if line.startswith("[wattwise] job "):
            return line.split()[2].rstrip(":")
    raise AssertionError(f"no job id in agent output:\n{stderr}")


def optimum_w(stderr):
    for line in stderr.splitlines():
        if "power limit set to the optimum" in line:
            return int(line.rsplit(",", 1)[1].split()[0])
    return None


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except FileNotFoundError:
        return True


def fake_energy_j(host):
    """The fake GPUs' energy counters now, summed (the ground truth), J."""
    with open(host.fake_state) as f:
        gpus = json.load(f)["gpus"]
    now = time.monotonic_ns()
    return sum(g["energy_mj"] + min(g["limit_mw"], LOAD_W * 1000) * (now - g["since_ns"]) / 1e9 for g in gpus) / 1000


def read_history(path):
    """The fake NVML's history file (FAKE_NVML_HISTORY): its segments, in order."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def history_energy_j(segments, gpu, at_ns, load_w=LOAD_W):
    """GPU `gpu`'s energy counter at CLOCK_MONOTONIC `at_ns` from the fake's
    history (the ground truth at any past instant), J."""
    seg = None
    for s in segments:
        if s["gpu"] == gpu and s["at_ns"] <= at_ns:
            seg = s
    if seg is None:
        raise AssertionError(f"no history for GPU {gpu} at {at_ns}")
    power_mw = min(seg["limit_mw"], load_w * 1000)
    return (seg["energy_mj"] + power_mw * (at_ns - seg["at_ns"]) / 1e9) / 1000


def run_suite(tests, wanted):
    """Runs `tests` ((name, function(tmp, server)) pairs) whose names contain one of
    `wanted` (all when empty) against one server; returns the exit code."""
    tests = [(n, f) for n, f in tests if not wanted or any(w in n for w in wanted)]
    failed = []
    with tempfile.TemporaryDirectory(prefix="wattwise-e2e-") as tmp:
        server = Server(os.path.join(tmp, "wattwise.db")).start()
        try:
            for name, f in tests:
                t = time.monotonic()
                try:
                    f(tmp, server)
                    print(f"ok    {name} ({time.monotonic() - t:.1f}s)", flush=True)
                except Exception:
                    failed.append(name)
                    print(f"FAIL  {name}", flush=True)
                    traceback.print_exc()
        finally:
            server.stop()
    print(f"{len(tests) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
