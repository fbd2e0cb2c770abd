"""The local server under a held write lock, idle and trickling connections, and a
deleted database (issue 17). Talks to a running wattwise-server only.

    server_limits.py lock URL DB [--clients 16] [--seconds 5] [--max-p99-ms N]
        Another process (this one) holds SQLite's write lock on DB while CLIENTS
        threads send /healthz, reads and writes for SECONDS: /healthz and reads keep
        answering (p99 under N ms), writes answer 503 naming the lock within a bound,
        and once the lock is released writes succeed again.
    server_limits.py idle URL [--idle 1000] [--max-ms N] [--header-timeout S]
        IDLE connections are opened and left silent; a new client is still answered
        within N ms. A connection that trickles a partial request head is closed by
        the server within the header timeout S (plus slack).
    server_limits.py deleted URL DB_DIR
        A job is registered, DB_DIR is deleted: /healthz and writes answer 503 at once.

Prints the figures it measured as one JSON line; exits non-zero on any failed check.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import sqlite3
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit


def fail(msg: str) -> None:
    print(f"server_limits: {msg}", file=sys.stderr)
    sys.exit(1)


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, url: str, timeout: float = 30.0):
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method: str, path: str, body=None) -> tuple[int, dict, float]:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        t = time.perf_counter()
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                # The server closes kept-alive connections left idle past its header
                # timeout; a client then sends again on a new one, once.
                stale = isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if attempt == 2 or not stale:
                    raise
                t = time.perf_counter()
        ms = (time.perf_counter() - t) * 1000
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"raw": raw.decode(errors="replace")}
        return r.status, parsed, ms


def spec(job_id: str) -> dict:
    return {"job_id": job_id, "job_id_prefix": "limits", "batch_sizes": [8, 16, 32],
            "default_batch_size": 16, "max_power": 300.0, "number_of_gpus": 1,
            "gpu_model": "A40", "max_epochs": 1, "mab_seed": 1}


def register(c: "Client") -> str:
    """Registers a fresh job (failing the check if refused); returns its id."""
    job = f"limits-{uuid.uuid4().hex[:8]}"
    status, body, _ = c.call("POST", "/jobs", spec(job))
    if status != 201:
        fail(f"register: {status} {body}")
    return job


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def held_lock(args) -> dict:
    c = Client(args.url)
    job = register(c)
    # Another process's writer: this script's own SQLite connection, holding the lock.
    holder = sqlite3.connect(args.db, timeout=10, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    health, reads, writes, write_status, errors = [], [], [], [], []
    stop = time.monotonic() + args.seconds

    def worker(i: int) -> None:
        cl = Client(args.url)
        n = 0
        while time.monotonic() < stop:
            n += 1
            kind = n % 4
            try:
                if kind in (0, 1):
                    s, b, ms = cl.call("GET", "/healthz")
                    (health if s == 200 else errors).append(ms if s == 200 else (s, b))
                elif kind == 2:
                    s, b, ms = cl.call("GET", f"/jobs/{job}")
                    (reads if s == 200 else errors).append(ms if s == 200 else (s, b))
                elif i % 4 == 0:
                    # A quarter of the clients also write; they must give up in bounded time.
                    s, b, ms = cl.call("GET", f"/jobs/batch_size?job_id={job}")
                    writes.append(ms)
                    write_status.append(s)
                    # 503 naming the lock, or the job's turn it waited for behind it.
                    msg = b.get("message", "")
                    if s != 503 or not ("locked" in msg or "busy" in msg):
                        errors.append((s, b))
            except Exception as e:  # noqa: BLE001 - any transport error is a failure
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    holder.execute("COMMIT")
    holder.close()
    s, b, _ = c.call("GET", f"/jobs/batch_size?job_id={job}")
    if s != 200:
        fail(f"a write after the lock was released: {s} {b}")
    out = {"check": "held write lock", "clients": args.clients, "seconds": args.seconds,
           "healthz": len(health), "healthz_p50_ms": round(pct(health, 0.5), 2),
           "healthz_p99_ms": round(pct(health, 0.99), 2), "reads": len(reads),
           "read_p99_ms": round(pct(reads, 0.99), 2), "writes_refused": len(writes),
           "write_max_ms": round(max(writes, default=0.0), 1)}
    print(json.dumps(out))
    if errors:
        fail(f"{len(errors)} unexpected answers, first: {errors[:3]}")
    if not health or not reads or not writes:
        fail(f"too few requests measured: {out}")
    if out["healthz_p99_ms"] > args.max_p99_ms or out["read_p99_ms"] > args.max_p99_ms:
        fail(f"/healthz or reads waited behind the write lock: {out}")
    if out["write_max_ms"] > args.max_write_ms:
        fail(f"a write waited longer than its bound: {out}")
    return out


def idle(args) -> dict:
    u = urlsplit(args.url)
    silent = []
    for _ in range(args.idle):
        s = socket.create_connection((u.hostname, u.port), timeout=10)
        silent.append(s)
    time.sleep(0.2)  # let the server accept what it will
    times = []
    for _ in range(20):
        c = Client(args.url, timeout=10)
        try:
            status, body, ms = c.call("GET", "/healthz")
        except Exception as e:  # noqa: BLE001
            fail(f"a new client was not answered with {args.idle} idle connections open: {e!r}")
        if status != 200:
            fail(f"/healthz with idle connections open: {status} {body}")
        times.append(ms)
        c.conn.close()
    # A client that trickles a request head is cut off by the header timeout.
    trickle = socket.create_connection((u.hostname, u.port), timeout=args.header_timeout + 10)
    trickle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    t = time.perf_counter()
    closed_after = None
    try:
        while time.perf_counter() - t < args.header_timeout + 10:
            trickle.sendall(b"X-Slow: 1\r\n")
            trickle.settimeout(0.5)
            try:
                data = trickle.recv(4096)
            except socket.timeout:
                continue
            if not data or b"408" in data or b"HTTP/1.1" in data:
                closed_after = time.perf_counter() - t
                break
    except OSError:
        closed_after = time.perf_counter() - t
    for s in silent:
        s.close()
    out = {"check": "idle connections", "idle": args.idle,
           "new_client_p50_ms": round(pct(times, 0.5), 2),
           "new_client_max_ms": round(max(times), 2),
           "trickle_closed_after_s": None if closed_after is None else round(closed_after, 2)}
    print(json.dumps(out))
    if out["new_client_max_ms"] > args.max_ms:
        fail(f"a new client waited too long: {out}")
    if closed_after is None or closed_after > args.header_timeout + 5:
        fail(f"a trickling client was never cut off: {out}")
    return out


def deleted(args) -> dict:
    c = Client(args.url)
    job = register(c)
    shutil.rmtree(args.db_dir)
    answers = {}
    for name, method, path, body in [
        ("healthz", "GET", "/healthz", None),
        ("predict", "GET", f"/jobs/batch_size?job_id={job}", None),
        ("register", "POST", "/jobs", spec(job + "x")),
    ]:
        s, b, _ = c.call(method, path, body)
        answers[name] = s
        if s != 503 or "deleted" not in b.get("message", ""):
            fail(f"{name} with the database deleted: {s} {b}")
    out = {"check": "deleted database", **answers}
    print(json.dumps(out))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("lock")
    a.add_argument("url")
    a.add_argument("db")
    a.add_argument("--clients", type=int, default=16)
    a.add_argument("--seconds", type=float, default=5.0)
    a.add_argument("--max-p99-ms", type=float, default=50.0)
    a.add_argument("--max-write-ms", type=float, default=3500.0)
    b = sub.add_parser("idle")
    b.add_argument("url")
    b.add_argument("--idle", type=int, default=1000)
    b.add_argument("--max-ms", type=float, default=100.0)
    b.add_argument("--header-timeout", type=float, default=10.0)
    d = sub.add_parser("deleted")
    d.add_argument("url")
    d.add_argument("db_dir")
    args = p.parse_args()
    {"lock": held_lock, "idle": idle, "deleted": deleted}[args.cmd](args)


if __name__ == "__main__":
    main()
