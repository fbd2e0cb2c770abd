"""Hostile numbers through the Worker's stores (Workers KV, or a Durable Object per job).

The same traffic as the core's property test (core/src/test_support/hostile_docs.rs, run there on
the memory and SQLite stores and on DynamoDB through moto): registrations,
predictions, reports, ends and profiles with extreme but JSON-representable
numbers. After every accepted write the job document is read back through
`GET /jobs/{id}`: it must answer 200 with every number finite (a document that
could not be parsed back answers 503). No request may answer 5xx, every 4xx names
a field, and every job can be deleted at the end. The run goes on until
WATTWISE_HOSTILE_DOCS documents (default 10,000) were written and read back.

Settings: WATTWISE_TEST_URL (required), WATTWISE_TEST_TOKEN, WATTWISE_HOSTILE_DOCS.
"""

from __future__ import annotations

import math
import os
import random
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
from retrying import Session  # noqa: E402  (the conformance suite's client session)

BASE_URL = os.environ.get("WATTWISE_TEST_URL", "").rstrip("/")
TOKEN = os.environ.get("WATTWISE_TEST_TOKEN") or None
WANT = int(os.environ.get("WATTWISE_HOSTILE_DOCS", "10000"))
HTTP = Session()
H = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}

# Extreme but JSON-representable numbers (the core test's list).
HOSTILE = [0.0, -0.0, 5e-324, 1e-310, 1e-300, 1e-12, 1.0, 1e6, 1e9, 1e12, 1e18, 1e30, 1e300,
           1e308, sys.float_info.max, -1.0, -1e308, sys.float_info.min]


class Gen:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def pick(self, xs):
        return xs[self.r.randrange(len(xs))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def number(self, scale: float) -> float:
        """A hostile number half of the time, else an ordinary one in [0, scale)."""
        return self.pick(HOSTILE) if self.chance(0.5) else self.r.random() * scale


def call(method: str, path: str, body=None, params=None):
    r = HTTP.request(method, BASE_URL + path, json=body, params=params, headers=H, timeout=60)
    assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
    try:
        v = r.json()
    except ValueError:
        v = None
    if r.status_code >= 400:
        msg = (v or {}).get("message", "") if isinstance(v, dict) else ""
        assert ":" in msg, f"{method} {path}: no field in {msg!r}"
    return r.status_code, v


def all_finite(v) -> bool:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return True
    if isinstance(v, (int, float)):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(all_finite(x) for x in v)
    if isinstance(v, dict):
        return all(all_finite(x) for x in v.values())
    return True


def check_document(job_id: str, tally: dict) -> None:
    status, doc = call("GET", f"/jobs/{job_id}")
    assert status == 200, f"job {job_id} cannot be read back: {doc}"
    assert all_finite(doc), f"job {job_id} holds a non-finite number: {doc}"
    tally["documents"] += 1


def hostile_spec(g: Gen, job_id: str) -> dict:
    n = 1 if g.chance(0.2) else 1 + g.r.randrange(8)
    batch_sizes = [8 << i for i in range(n)]
    spec = {
        "job_id": job_id,
        "job_id_prefix": "hostile",
        "batch_sizes": batch_sizes,
        "default_batch_size": g.pick(batch_sizes),
        "eta_knob": g.pick([0.0, 1.0, 0.5, 5e-324]) if g.chance(0.5) else g.r.random(),
        "beta_knob": None if g.chance(0.2) else g.number(4.0),
        "target_metric": g.number(1.0),
        "max_epochs": 1 + g.r.randrange(4),
        "num_pruning_rounds": g.r.randrange(4),
        "window_size": g.pick([0, 0, 1, 2, 5]),
        "mab_prior_mean": -g.number(1e6) if g.chance(0.5) else g.number(1e6),
        "mab_prior_precision": g.number(1.0),
        "mab_num_explorations": g.r.randrange(3),
        "mab_seed": g.r.randrange(1000),
        "max_power": g.number(3000.0),
        "number_of_gpus": 1 + g.r.randrange(8),
        "gpu_model": "H100",
    }
    if g.chance(0.5):
        spec["higher_is_better_metric"] = False
    return spec


def test_hostile_documents_read_back_and_every_job_deletes():
    assert BASE_URL, "WATTWISE_TEST_URL is not set"
    g = Gen(31)
    run = uuid.uuid4().hex[:8]
    tally = {"documents": 0, "jobs": 0, "refused": 0}
    job = 0
    while tally["documents"] < WANT:
        job += 1
        job_id = f"hostile-{run}-{job}"
        status, answer = call("POST", "/jobs", hostile_spec(g, job_id))
        if status != 201:
            assert 400 <= status < 500, (status, answer)
            tally["refused"] += 1
            continue
        tally["jobs"] += 1
        check_document(job_id, tally)
        dispatched: list[dict] = []
        for _ in range(40):
            op = g.r.randrange(10)
            if op < 4 or not dispatched:
                status, trial = call("GET", "/jobs/batch_size", params={"job_id": job_id})
                if status == 200:
                    dispatched.append(trial)
                    check_document(job_id, tally)
                else:
                    # Only a real "nothing converged" may refuse a batch size.
                    assert status == 400 and "converged" in trial.get("message", ""), trial
                    break
            elif op < 9:
                t = g.pick(dispatched)
                report = {
                    "job_id": job_id, "batch_size": t["batch_size"], "trial_number": t["trial_number"],
                    "time": g.number(1e4), "energy": g.number(1e7),
                    "metric": -g.number(1.0) if g.chance(0.5) else g.number(1.0),
                    "current_epoch": g.r.randrange(6),
                }
                status, answer = call("POST", "/report", report)
                assert status in (200, 400, 404, 422), (status, answer)
                if status == 200 and answer.get("stop_train") is True:
                    check_document(job_id, tally)
            else:
                t = g.pick(dispatched)
                status, answer = call("PATCH", "/trials", t)
                assert status in (200, 404), (status, answer)
                profile = {
                    "batch_size": t["batch_size"], "phase": "train", "gpu_model": "H100",
                    "measurements": [{"power_limit": 1 + g.r.randrange(700),
                                      "average_power": g.number(700.0), "throughput": g.number(1e4)}],
                }
                status, answer = call("POST", f"/jobs/{job_id}/profiles", profile)
                assert status in (201, 422), (status, answer)
                check_document(job_id, tally)
        status, answer = call("DELETE", "/jobs", params={"job_id": job_id})
        assert status == 200, answer
    print(f"hostile documents through the Worker: {tally}")
    assert tally["documents"] >= WANT, tally
