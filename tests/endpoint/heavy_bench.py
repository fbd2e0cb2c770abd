"""Heavy reads against a running wattwise-server (a benchmark, not a test; issue 26).

Usage: python heavy_bench.py URL DB PID [--trials 500000] [--docs 200] [--clients 64]
           [--seconds 20] [--max-rss-mb 3072]

Setup: a job with TRIALS archived trials (records written into DB directly, as the
archive holds them) and DOCS large job documents (one job given 256 batch sizes and
1,024 open trials through the API, its document copied under DOCS ids in DB).
Load: CLIENTS keep-alive clients for SECONDS, half exporting the large job's trials
(JSON and CSV in turn, the body read and dropped as it comes), half listing
`GET /jobs?limit=200`; a client answered 503 waits its Retry-After. Meanwhile a
separate process sends GET /healthz every 20 ms on its own connection, and the
server's resident memory (VmRSS of PID) is sampled every 50 ms; a server above
MAX_RSS_MB is killed (so a run cannot exhaust the machine) and the run says so.
Prints one JSON line: answers by kind and status, /healthz p50/p99/max, peak and
after-load (3 s later) resident memory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

from archived_job import archived_job


def call(conn: http.client.HTTPConnection, method: str, path: str, body=None):
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    raw = r.read()
    return r.status, (json.loads(raw) if raw else None)


def setup(args, host: str, port: int) -> str:
    c = http.client.HTTPConnection(host, port, timeout=120)
    tag = uuid.uuid4().hex[:6]
    big = f"hb{tag}-big"
    spec = {"job_id": big, "job_id_prefix": f"hb{tag}", "batch_sizes": [8, 16, 32],
            "default_batch_size": 16, "max_power": 300.0, "number_of_gpus": 1,
            "gpu_model": "A40", "max_epochs": 1, "mab_seed": 1}
    assert call(c, "POST", "/jobs", spec)[0] == 201
    archived_job(lambda m, p, b=None: call(c, m, p, b), args.db, big, args.trials)
    db = sqlite3.connect(args.db, timeout=60)
    # One large document through the API, then copied.
    large = f"hb{tag}-doc"
    spec = dict(spec, job_id=large, batch_sizes=list(range(8, 8 + 256)), default_batch_size=8)
    assert call(c, "POST", "/jobs", spec)[0] == 201
    for _ in range(1024):
        s, b = call(c, "GET", f"/jobs/batch_size?job_id={large}")
        if s != 200:
            break
    (doc, created), = db.execute("SELECT doc, created_ms FROM jobs WHERE job_id = ?", (large,))

    def renamed(v, new):
        if isinstance(v, dict):
            return {k: renamed(x, new) for k, x in v.items()}
        if isinstance(v, list):
            return [renamed(x, new) for x in v]
        return new if v == large else v

    parsed = json.loads(doc)
    rows = []
    for k in range(args.docs):
        new = f"{large}-{k:03d}"
        rows.append((new, json.dumps(renamed(parsed, new), separators=(",", ":")), created + 1 + k))
    with db:
        db.executemany("INSERT INTO jobs (job_id, version, doc, created_ms) VALUES (?, 1, ?, ?)", rows)
    db.close()
    print(json.dumps({"setup": {"archived_trials": args.trials, "docs": args.docs,
                                "doc_bytes": len(doc)}}), flush=True)
    return big


def probe(url: str, seconds: float) -> None:
    """A separate process: GET /healthz every 20 ms; prints the latencies (ms) and errors."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    lat, errors, stop = [], [], time.monotonic() + seconds
    while time.monotonic() < stop:
        t = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            lat.append((time.perf_counter() - t) * 1000)
            if r.status != 200:
                errors.append(r.status)
        except (OSError, http.client.HTTPException) as e:
            errors.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        time.sleep(0.02)
    print(json.dumps({"lat": lat, "errors": errors[:5], "n_errors": len(errors)}))


def rss_mb(pid: int, field: str = "VmRSS") -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("db", nargs="?")
    p.add_argument("pid", type=int, nargs="?")
    p.add_argument("--trials", type=int, default=500_000)
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-rss-mb", type=float, default=3072.0)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe:
        probe(args.url, args.seconds)
        return
    u = urlsplit(args.url)
    big = setup(args, u.hostname, u.port)
    baseline = rss_mb(args.pid)
    stop = threading.Event()
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(key: str, n: int = 1) -> None:
        with lock:
            counts[key] = counts.get(key, 0) + n

    def client(i: int) -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        k = 0
        while not stop.is_set():
            k += 1
            if i % 2 == 0:
                kind, path = "export", f"/jobs/{big}/trials" + ("?format=csv" if k % 2 else "")
            else:
                kind, path = "list", "/jobs?limit=200"
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                got = 0
                while not stop.is_set():
                    chunk = r.read(1 << 16)
                    if not chunk:
                        break
                    got += len(chunk)
                if stop.is_set() and not r.isclosed():
                    conn.close()
                    count(f"{kind} cut at the end of the run")
                    break
                count(f"{kind} {r.status}")
                count(f"{kind} bytes", got)
                if r.status == 503:
                    time.sleep(float(r.getheader("Retry-After") or "1"))
            except (OSError, http.client.HTTPException) as e:
                count(f"{kind} error {type(e).__name__}")
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
                time.sleep(0.5)

    prober = subprocess.Popen([sys.executable, __file__, args.url, "--probe", "--seconds", str(args.seconds)],
                              stdout=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    peak, killed, end = 0.0, None, time.monotonic() + args.seconds
    while time.monotonic() < end:
        rss = rss_mb(args.pid)
        if rss is None:
            killed = killed or "the server exited"
            break
        peak = max(peak, rss)
        if rss > args.max_rss_mb and not killed:
            killed = f"killed by the bench above {args.max_rss_mb:.0f} MB"
            os.kill(args.pid, signal.SIGKILL)
        time.sleep(0.05)
    stop.set()
    probed = json.loads(prober.communicate()[0])
    for t in threads:
        t.join(timeout=10)
    time.sleep(3)
    lat = sorted(probed["lat"])
    q = lambda f: round(lat[min(len(lat) - 1, int(f * len(lat)))], 2) if lat else None  # noqa: E731
    out = {"clients": args.clients, "seconds": args.seconds, "answers": counts,
           "healthz": {"n": len(lat), "p50_ms": q(0.5), "p99_ms": q(0.99),
                       "max_ms": round(lat[-1], 2) if lat else None,
                       "errors": probed["n_errors"], "first_errors": probed["errors"]},
           "rss_mb": {"before_load": baseline and round(baseline), "peak": round(peak),
                      "peak_hwm": rss_mb(args.pid, "VmHWM") and round(rss_mb(args.pid, "VmHWM")),
                      "after_load_3s": rss_mb(args.pid) and round(rss_mb(args.pid))},
           "server": killed or "alive"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
