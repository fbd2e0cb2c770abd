"""A job with many archived trials, made one way for the suite's heavy reads
(server_limits.py heavy) and the heavy-read benchmark (heavy_bench.py).

One trial of the job runs to its end through the API; its exported record is the
template of every archived one, written straight into the server's SQLite file
(another process's write, as the store's own archive writes them: one JSON record
per trial, in batches of 50,000).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Callable

# `call(method, path, body)` -> (status, parsed body): the caller's HTTP client.
Call = Callable[..., tuple]


def finished_trial(call: Call, job: str) -> dict:
    """Runs one trial of JOB to its end (one epoch, converged); returns it as the
    export shows it."""
    s, t = call("GET", f"/jobs/batch_size?job_id={job}")
    if s != 200:
        raise RuntimeError(f"predict: {s} {t}")
    s, b = call("POST", "/report", {"job_id": job, "batch_size": t["batch_size"],
                                    "trial_number": t["trial_number"], "time": 10.0,
                                    "energy": 500.0, "metric": 0.9, "current_epoch": 1})
    if s != 200:
        raise RuntimeError(f"report: {s} {b}")
    s, rows = call("GET", f"/jobs/{job}/trials")
    if s != 200 or len(rows) != 1:
        raise RuntimeError(f"the export of a one-trial job: {s} {rows}")
    return rows[0]


def archive_trials(db: str, job: str, template: dict, count: int) -> None:
    """Writes archived trials 1..=COUNT of JOB into the SQLite file DB, each the
    template with its own trial number and start."""
    record = {k: v for k, v in template.items() if k != "job_id"}
    conn = sqlite3.connect(db, timeout=60)
    for lo in range(1, count + 1, 50_000):
        rows = []
        for n in range(lo, min(lo + 50_000, count + 1)):
            record["trial_number"] = n
            record["start_ms"] = n * 1000
            rows.append((job, n, json.dumps(record, separators=(",", ":"))))
        with conn:
            conn.executemany(
                "INSERT OR IGNORE INTO trials (job_id, trial_number, record) VALUES (?, ?, ?)", rows)
    conn.close()


def archived_job(call: Call, db: str, job: str, count: int) -> dict:
    """Gives the registered JOB one finished trial, then archived trials up to
    COUNT (the first, already there, is kept: `INSERT OR IGNORE`). Returns the
    first trial as the export shows it, the template of the others."""
    template = finished_trial(call, job)
    archive_trials(db, job, template, count)
    return template
