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

    server_limits.py idle URL --skip-trickle ...
        The same without the trickling client (for a server at a low file limit:
        the new client must not wait for silent sockets' header timeout).
    server_limits.py heavy URL DB [--trials 50000]
        A job with TRIALS archived trials (records written into DB directly, as the
        archive holds them): its JSON and CSV exports are complete and in trial
        order; while one export holds the server's only heavy-read slot (start it
        with --max-heavy-reads 1), another export and a job list get 503 with
        Retry-After, and light requests still answer; after it, exports answer again.
    server_limits.py drain URL PID LOG
        A request is in flight (its body half sent) when the server gets SIGTERM:
        it still gets its answer, new connections are refused, the server exits
        and its log says it drained.
    server_limits.py full URL DIR
        DIR is a small filesystem holding the database: it is filled; /healthz and
        a write answer 503; once space is freed both answer again.
    server_limits.py wal-write URL DB FILE / wal-check URL FILE
        Jobs are registered, DB's -wal file is deleted, more jobs are registered
        (all acknowledged), their ids go to FILE; after the server is killed (-9)
        and restarted, wal-check finds every one.

Prints the figures it measured as one JSON line; exits non-zero on any failed check.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

from archived_job import archived_job


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
    for i in range(args.idle):
        try:
            silent.append(socket.create_connection((u.hostname, u.port), timeout=10))
        except OSError as e:
            fail(f"connection {i + 1} of {args.idle} silent ones was not accepted within 10 s: {e!r}")
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
    if args.skip_trickle:
        for s in silent:
            s.close()
        out = {"check": "idle connections at the cap", "idle": args.idle,
               "new_client_p50_ms": round(pct(times, 0.5), 2),
               "new_client_max_ms": round(max(times), 2)}
        print(json.dumps(out))
        if out["new_client_max_ms"] > args.max_ms:
            fail(f"a new client waited too long: {out}")
        return out
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


def heavy(args) -> dict:
    c = Client(args.url, timeout=120)
    job = register(c)
    n = args.trials
    template = archived_job(lambda m, p, b=None: c.call(m, p, b)[:2], args.db, job, n)
    t = time.perf_counter()
    s, rows, _ = c.call("GET", f"/jobs/{job}/trials")
    json_s = time.perf_counter() - t
    if s != 200 or not isinstance(rows, list):
        fail(f"the JSON export: {s} {str(rows)[:200]}")
    numbers = [r.get("trial_number") for r in rows]
    if numbers != list(range(1, n + 1)):
        fail(f"the JSON export has {len(rows)} trials, not 1..{n} in order")
    if rows[0] != template or any(r.get("job_id") != job for r in rows):
        fail(f"the JSON export's rows are not the trials: {rows[0]} vs {template}")
    if rows[-1]["start_ms"] != n * 1000 or rows[-1]["status"] != template["status"]:
        fail(f"the last archived trial reads back wrong: {rows[-1]}")
    c.conn.request("GET", f"/jobs/{job}/trials?format=csv")
    r = c.conn.getresponse()
    lines = r.read().decode().splitlines()
    if r.status != 200 or len(lines) != n + 1 or not lines[0].startswith("job_id,trial_number"):
        fail(f"the CSV export: {r.status}, {len(lines)} lines")
    if [int(line.split(",")[1]) for line in lines[1:]] != list(range(1, n + 1)):
        fail("the CSV export's trials are not 1..N in order")
    # One export holds the only heavy-read slot: a client that reads nothing (a tiny
    # receive window) keeps it in flight.
    u = urlsplit(args.url)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((u.hostname, u.port))
    slow.sendall(f"GET /jobs/{job}/trials HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(1.0)
    refused = {}
    for name, path in [("export", f"/jobs/{job}/trials?format=csv"), ("list", "/jobs?limit=200")]:
        c2 = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        c2.request("GET", path)
        r = c2.getresponse()
        body = r.read()
        refused[name] = (r.status, r.getheader("Retry-After"))
        if r.status != 503 or not (r.getheader("Retry-After") or "").isdigit():
            fail(f"a {name} beyond the heavy-read cap: {r.status} Retry-After={r.getheader('Retry-After')} "
                 f"{body[:200]!r}")
        c2.close()
    for path in ["/healthz", f"/jobs/{job}"]:
        s, b, ms = c.call("GET", path)
        if s != 200:
            fail(f"a light request while the heavy-read slot is taken: {path} {s} {b}")
    slow.close()
    for _ in range(50):
        s, b, _ = c.call("GET", "/jobs?limit=5")
        if s == 200:
            break
        time.sleep(0.2)
    else:
        fail(f"the job list never answered again after the slow export closed: {s} {b}")
    out = {"check": "heavy reads", "trials": n, "json_export_s": round(json_s, 2),
           "refused": refused}
    print(json.dumps(out))
    return out


def proc_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def drain(args) -> dict:
    u = urlsplit(args.url)
    body = json.dumps(spec(f"limits-drain-{uuid.uuid4().hex[:6]}")).encode()
    s = socket.create_connection((u.hostname, u.port), timeout=10)
    s.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    time.sleep(0.3)
    os.kill(args.pid, signal.SIGTERM)
    time.sleep(0.5)
    try:
        late = socket.create_connection((u.hostname, u.port), timeout=2)
        late.close()
        fail("a new connection was accepted while draining")
    except OSError:
        pass
    try:
        s.sendall(body[10:])
        answer = s.recv(4096).decode(errors="replace")
    except OSError as e:
        fail(f"the request in flight at SIGTERM was cut off: {e!r}")
    if not answer.startswith("HTTP/1.1 201"):
        fail(f"the request in flight at SIGTERM: {answer[:200]!r}")
    t = time.perf_counter()
    while not proc_gone(args.pid):
        if time.perf_counter() - t > 5:
            fail("the server did not exit within 5 s of its last request after SIGTERM")
        time.sleep(0.05)
    log = open(args.log, errors="replace").read()
    if "drained" not in log:
        fail(f"the server's log does not say it drained: {log[-500:]}")
    out = {"check": "SIGTERM drains", "exit_after_s": round(time.perf_counter() - t, 2)}
    print(json.dumps(out))
    return out


def full(args) -> dict:
    c = Client(args.url)
    job = register(c)
    filler = os.path.join(args.dir, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    time.sleep(1.2)  # past the server's probe interval
    s, b, _ = c.call("GET", "/healthz")
    if s != 503:
        fail(f"/healthz on a full disk: {s} {b}")
    answers = {"healthz_full": s}
    s, b, _ = c.call("POST", "/jobs", spec(job + "x"))
    if s != 503:
        fail(f"a write on a full disk: {s} {b}")
    answers["write_full"] = s
    s, b, _ = c.call("GET", "/healthz")
    if s != 503:
        fail(f"/healthz after a write failed on a full disk: {s} {b}")
    os.remove(filler)
    time.sleep(1.2)
    s, b, _ = c.call("GET", "/healthz")
    if s != 200:
        fail(f"/healthz once space is freed: {s} {b}")
    answers["healthz_freed"] = s
    s, b, _ = c.call("GET", f"/jobs/batch_size?job_id={job}")
    if s != 200:
        fail(f"a write once space is freed: {s} {b}")
    out = {"check": "full disk", **answers}
    print(json.dumps(out))
    return out


def wal_write(args) -> dict:
    c = Client(args.url)
    jobs = [register(c) for _ in range(5)]
    os.remove(args.db + "-wal")
    jobs += [register(c) for _ in range(5)]
    s, b, _ = c.call("GET", "/healthz")
    if s != 200:
        fail(f"/healthz after the -wal file was deleted and writes went on: {s} {b}")
    with open(args.file, "w") as f:
        f.write("\n".join(jobs))
    out = {"check": "deleted -wal file", "acknowledged": len(jobs)}
    print(json.dumps(out))
    return out


def wal_check(args) -> dict:
    c = Client(args.url)
    jobs = open(args.file).read().split()
    lost = [j for j in jobs if c.call("GET", f"/jobs/{j}")[0] != 200]
    out = {"check": "deleted -wal file, after kill -9", "acknowledged": len(jobs), "lost": len(lost)}
    print(json.dumps(out))
    if lost:
        fail(f"acknowledged writes were lost: {lost}")
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
    b.add_argument("--skip-trickle", action="store_true")
    d = sub.add_parser("deleted")
    d.add_argument("url")
    d.add_argument("db_dir")
    h = sub.add_parser("heavy")
    h.add_argument("url")
    h.add_argument("db")
    h.add_argument("--trials", type=int, default=50_000)
    dr = sub.add_parser("drain")
    dr.add_argument("url")
    dr.add_argument("pid", type=int)
    dr.add_argument("log")
    f = sub.add_parser("full")
    f.add_argument("url")
    f.add_argument("dir")
    w = sub.add_parser("wal-write")
    w.add_argument("url")
    w.add_argument("db")
    w.add_argument("file")
    wc = sub.add_parser("wal-check")
    wc.add_argument("url")
    wc.add_argument("file")
    args = p.parse_args()
    {"lock": held_lock, "idle": idle, "deleted": deleted, "heavy": heavy, "drain": drain,
     "full": full, "wal-write": wal_write, "wal-check": wal_check}[args.cmd](args)


if __name__ == "__main__":
    main()
