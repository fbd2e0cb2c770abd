"""Concurrent reports for one job on the local Worker: none is lost.

Dispatches TRIALS trials of one job one by one, then sends every final report at
once from CLIENTS threads (each report a read-modify-write of the same job
document), and checks in GET /jobs/{id}/trials that each trial is Succeeded with
exactly the time and energy sent. TRIALS is over the document's 64 recent trials,
so the older ones must also have reached the archive (per-trial keys in KV mode,
the object's storage in Durable Object mode).

Settings: WATTWISE_TEST_URL (required), WATTWISE_TEST_TOKEN, WATTWISE_TEST_REPORTS
(trials, default 96).
"""

from __future__ import annotations

import os
import sys
import threading
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
from retrying import Session  # noqa: E402  (the conformance suite's client session)

BASE_URL = os.environ.get("WATTWISE_TEST_URL", "").rstrip("/")
TOKEN = os.environ.get("WATTWISE_TEST_TOKEN") or None
TRIALS = int(os.environ.get("WATTWISE_TEST_REPORTS", "96"))
CLIENTS = 32


def headers() -> dict:
    return {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


def test_concurrent_reports_for_one_job_are_all_kept():
    assert BASE_URL, "WATTWISE_TEST_URL is not set"
    s = Session()
    job_id = f"reports-{uuid.uuid4().hex[:12]}"
    spec = {
        "job_id": job_id,
        "job_id_prefix": "reports",
        "mab_seed": 7,
        "batch_sizes": [8, 16, 32, 64],
        "default_batch_size": 32,
        "max_epochs": 100,
        "max_power": 300.0,
        "number_of_gpus": 1,
        "gpu_model": "A100",
    }
    r = s.post(f"{BASE_URL}/jobs", json=spec, headers=headers(), timeout=60)
    assert r.status_code == 201, r.text

    trials = []
    for _ in range(TRIALS):
        r = s.get(f"{BASE_URL}/jobs/batch_size", params={"job_id": job_id}, headers=headers(), timeout=60)
        assert r.status_code == 200, r.text
        trials.append(r.json())
    numbers = [t["trial_number"] for t in trials]
    assert numbers == list(range(1, TRIALS + 1)), numbers

    # Distinct values per trial, so a report landing on the wrong trial is caught too.
    sent = {t["trial_number"]: (100.0 + t["trial_number"], 5000.0 + 3 * t["trial_number"]) for t in trials}
    answers: dict[int, tuple[int, str]] = {}
    barrier = threading.Barrier(CLIENTS)

    def client(idx: int):
        c = Session()
        barrier.wait()
        for t in trials[idx::CLIENTS]:
            n = t["trial_number"]
            time_s, energy = sent[n]
            body = dict(t, time=time_s, energy=energy, metric=0.9, current_epoch=3)
            resp = c.post(f"{BASE_URL}/report", json=body, headers=headers(), timeout=120)
            answers[n] = (resp.status_code, resp.text)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()

    failed = {n: a for n, a in answers.items() if a[0] != 200}
    assert len(answers) == TRIALS and not failed, f"{len(failed)} reports failed: {list(failed.items())[:3]}"
    for n, (_, text) in answers.items():
        assert '"stop_train":true' in text.replace(" ", ""), (n, text)

    r = s.get(f"{BASE_URL}/jobs/{job_id}/trials", headers=headers(), timeout=60)
    assert r.status_code == 200, r.text
    exported = {t["trial_number"]: t for t in r.json()}
    assert sorted(exported) == numbers, "trials missing from or extra in the export"
    for n, (time_s, energy) in sent.items():
        rec = exported[n]
        assert rec["status"] == "Succeeded", rec
        assert rec["time"] == time_s and rec["energy"] == energy, (rec, time_s, energy)

    state = s.get(f"{BASE_URL}/jobs/{job_id}", headers=headers(), timeout=60).json()
    in_doc = len(state["open_trials"]) + len(state["recent_trials"])
    assert in_doc <= 64 < TRIALS, f"the archive was not exercised ({in_doc} trials in the document)"

    r = s.delete(f"{BASE_URL}/jobs", params={"job_id": job_id}, headers=headers(), timeout=60)
    assert r.status_code == 200, r.text
    r = s.get(f"{BASE_URL}/jobs/{job_id}/trials", headers=headers(), timeout=60)
    assert r.status_code == 404, r.text
