"""32 clients hammering one job (predict, report, end): nothing answered 2xx is lost.

Each client loops: ask for a batch size, then either report keep-training and a
final result, or end the trial without a result; it stops after its request
budget (WATTWISE_TEST_CONCURRENCY_REQUESTS, default 500). Afterwards every report
that was answered 2xx with stop_train is in the trials export with the values
sent, every 2xx end left its trial Failed (unless a result came first), trial
numbers are unique and contiguous, and the document is still valid.
"""

from __future__ import annotations

import os
import threading
import time

from conftest import BASE_URL, TOKEN, job_spec
from retrying import Session

CLIENTS = 32
REQUESTS = int(os.environ.get("WATTWISE_TEST_CONCURRENCY_REQUESTS", "500"))
# Several instances of one host over one store (e.g. two Lambda emulators on one
# DynamoDB table): clients are spread over them, so writes really race.
URLS = [u.rstrip("/") for u in os.environ.get("WATTWISE_TEST_URLS", "").split(",") if u] or [BASE_URL]


def client(idx: int, job_id: str, out: dict, errors: list, barrier: threading.Barrier):
    s = Session()
    base = URLS[idx % len(URLS)]
    headers = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}
    sent = 0
    reported = {}   # trial_number -> (time, energy, batch_size, converged)
    ended = set()
    dispatched = []
    statuses = {}

    def call(method, path, **kw):
        nonlocal sent
        sent += 1
        r = s.request(method, base + path, headers=headers, timeout=120, **kw)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        return r

    barrier.wait()
    cycle = 0
    while sent < REQUESTS:
        cycle += 1
        r = call("GET", "/jobs/batch_size", params={"job_id": job_id})
        if r.status_code != 200:
            errors.append(("predict", r.status_code, r.text))
            continue
        trial = r.json()
        n = trial["trial_number"]
        dispatched.append(n)
        if sent >= REQUESTS:
            break
        if cycle % 3 == 0:
            r = call("PATCH", "/trials", json=trial)
            if r.status_code == 200:
                ended.add(n)
            else:
                errors.append(("end", r.status_code, r.text))
            continue
        bs = trial["batch_size"]
        # Costs close to each other so no run passes beta x min_cost.
        t, e = 10.0 + bs / 64.0 + idx / 100.0, 1000.0 + bs + cycle / 10.0
        body = dict(trial, time=t, energy=e, metric=0.1, current_epoch=1)
        if cycle % 2 == 0 and sent + 2 <= REQUESTS:
            r = call("POST", "/report", json=body)
            if r.status_code != 200 or r.json()["stop_train"]:
                errors.append(("keep", r.status_code, r.text))
        body = dict(body, time=2 * t, energy=2 * e, metric=0.9, current_epoch=2)
        r = call("POST", "/report", json=body)
        if r.status_code == 200 and r.json()["stop_train"]:
            reported[n] = (2 * t, 2 * e, bs, r.json()["converged"])
        else:
            errors.append(("report", r.status_code, r.text))
    out[idx] = {"reported": reported, "ended": ended, "dispatched": dispatched, "statuses": statuses}


def test_concurrent_clients_lose_nothing(api):
    spec = api.register(job_spec("conc", mab_seed=None, max_epochs=100))
    job_id = spec["job_id"]
    out, errors = {}, []
    barrier = threading.Barrier(CLIENTS)
    threads = [
        threading.Thread(target=client, args=(i, job_id, out, errors, barrier)) for i in range(CLIENTS)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = sum(sum(o["statuses"].values()) for o in out.values())
    statuses = {}
    for o in out.values():
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    print(f"\nconcurrency: {CLIENTS} clients x {REQUESTS} requests over {len(URLS)} instance(s) = {total} in {elapsed:.1f}s "
          f"({total / elapsed:.0f} req/s), statuses {statuses}")
    assert len(out) == CLIENTS
    assert not errors, f"{len(errors)} failed requests, first: {errors[:5]}"

    # The document is valid and consistent with what was handed out.
    state = api.state(job_id)
    assert state["job_id"] == job_id
    assert state["stage"] in ("Pruning", "MAB")
    dispatched = [n for o in out.values() for n in o["dispatched"]]
    assert len(dispatched) == len(set(dispatched)), "a trial number was handed out twice"
    assert state["next_trial_number"] == max(dispatched) + 1

    trials = api.get(f"/jobs/{job_id}/trials").json()
    numbers = [t["trial_number"] for t in trials]
    assert len(numbers) == len(set(numbers)), "duplicate trial in the export"
    assert sorted(numbers) == list(range(1, max(dispatched) + 1))
    by_number = {t["trial_number"]: t for t in trials}

    n_reported = 0
    for o in out.values():
        for n, (t, e, bs, converged) in o["reported"].items():
            rec = by_number[n]
            assert rec["status"] == "Succeeded", rec
            assert rec["batch_size"] == bs
            assert rec["time"] == t and rec["energy"] == e, (rec, t, e)
            assert rec["converged"] == converged
            n_reported += 1
        for n in o["ended"]:
            assert by_number[n]["status"] == "Failed", by_number[n]
    succeeded = sum(1 for t in trials if t["status"] == "Succeeded")
    assert succeeded == n_reported
