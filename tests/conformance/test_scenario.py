"""A whole job over HTTP, as training runs would drive it.

Registration, two pruning rounds (down then up from the default), a concurrent
request during exploration, an early stop above beta x min_cost, a run that misses
the target in max_epochs, the bandit's rounds, a repeated report (also of a trial
that has left the document), an ended trial, the exports, profiles and deletion.
"""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import expect_run, job_spec, report, train

ENDED_RUNS = 64


def test_whole_job(api):
    spec = job_spec("scen", batch_sizes=[128, 8, 64, 16, 32])
    job = spec["job_id"]
    created = api.register(spec)
    assert created["batch_sizes"] == [8, 16, 32, 64, 128]

    # Round 1 starts at the default, 32.
    t1 = api.predict(job)
    assert (t1["batch_size"], t1["trial_number"]) == (32, 1)
    # Another run asks while 32 is still exploring: a concurrent trial at the best known size.
    c = api.predict(job)
    assert (c["batch_size"], c["trial_number"]) == (32, 2)
    assert report(api, t1, 1, 0.1)["stop_train"] is False
    r = train(api, t1, 5)
    assert (r["stop_train"], r["converged"]) == (True, True), r
    state = api.state(job)
    assert state["min_cost"] == pytest.approx(0.5 * 2500.0 * 5 + 0.5 * 300.0 * 12.0 * 5)
    assert state["min_cost_batch_size"] == 32
    # The concurrent run ends without a report: Failed.
    assert api.request("PATCH", "/trials", c).status_code == 200

    # Downwards: 16 is cheaper; 8 passes beta x min_cost and is stopped early.
    expect_run(api, job, 16)
    r = expect_run(api, job, 8, converged=False)
    assert "exceeded the cost upper bound" in r["message"]
    # Upwards: 64 converges, 128 does not reach the target within max_epochs.
    expect_run(api, job, 64)
    r = expect_run(api, job, 128, converged=False, epochs=11)
    assert "exceeded" in r["message"] or "max_epoch" in r["message"]

    # Round 2 starts at the cheapest, 16, over the survivors.
    for expected in [16, 32, 64]:
        expect_run(api, job, expected)
    assert api.state(job)["stage"] == "Pruning"

    # The bandit: 16 is the cheapest and should win most rounds.
    picks = Counter()
    last = None
    for _ in range(40):
        t = api.predict(job)
        assert t["batch_size"] in (16, 32, 64), "the bandit picks survivors only"
        picks[t["batch_size"]] += 1
        assert train(api, t, 5)["converged"] is True
        last = t
    assert api.state(job)["stage"] == "MAB"
    assert picks[16] > 20, picks

    # A repeated report of a finished trial: stop, with the recorded result.
    again = report(api, last, 5, 0.9)
    assert (again["stop_train"], again["converged"]) == (True, True)
    assert "already reported" in again["message"]
    # ... also once the trial has left the document for the archive: push it out
    # with runs that end without a result.
    for _ in range(ENDED_RUNS):
        assert api.request("PATCH", "/trials", api.predict(job)).status_code == 200
    first = api.get(f"/jobs/{job}/trials").json()[0]
    assert first["trial_number"] == 1
    assert all(t["trial_number"] != 1 for t in api.state(job)["recent_trials"])
    again = report(api, dict(first, job_id=job), 5, 0.9)
    assert (again["stop_train"], again["converged"]) == (True, True)
    # The failed early-stopped trial (8) answers not converged when repeated.
    eight = next(t for t in api.get(f"/jobs/{job}/trials").json() if t["batch_size"] == 8)
    again = report(api, dict(eight, job_id=job), 5, 0.9)
    assert (again["stop_train"], again["converged"]) == (True, False)

    # An ended trial: Failed, and a late report is refused without touching the state.
    t = api.predict(job)
    assert api.request("PATCH", "/trials", t).status_code == 200
    before = api.state(job)
    r = api.post(
        "/report",
        dict(t, time=1.0, energy=1.0, metric=0.9, current_epoch=1),
    )
    assert r.status_code == 400, r.text
    assert "trial_number" in r.json()["message"]
    assert api.state(job) == before

    # Profiles posted by the agent live with the job.
    profile = {"batch_size": 16, "phase": "train", "gpu_model": "V100",
               "measurements": [{"power_limit": 250, "average_power": 200.0, "throughput": 900.0}]}
    assert api.post(f"/jobs/{job}/profiles", profile).status_code == 201
    assert api.get(f"/jobs/{job}/profiles").json() == [profile]

    # The export has every trial exactly once, in order, in JSON and CSV.
    trials = api.get(f"/jobs/{job}/trials").json()
    numbers = [t["trial_number"] for t in trials]
    assert numbers == list(range(1, len(numbers) + 1))
    # Round 1: 32, concurrent, 16, 8, 64, 128; round 2: three; the bandit: 40; the ended ones.
    assert len(numbers) == 6 + 3 + 40 + ENDED_RUNS + 1
    kinds = Counter(t["type"] for t in trials)
    assert kinds == {"Exploration": 8, "Concurrent": 1, "MAB": 40 + ENDED_RUNS + 1}
    statuses = Counter(t["status"] for t in trials)
    assert statuses == {"Succeeded": 48, "Failed": 1 + ENDED_RUNS + 1}
    csv_text = api.get(f"/jobs/{job}/trials", params={"format": "csv"}).text
    assert len(csv_text.strip().splitlines()) == len(numbers) + 1

    # Deletion, then the job is gone everywhere.
    assert api.request("DELETE", "/jobs", params={"job_id": job}).status_code == 200
    assert api.get(f"/jobs/{job}").status_code == 404
    assert api.get("/jobs/batch_size", params={"job_id": job}).status_code == 404
    assert api.request("DELETE", "/jobs", params={"job_id": job}).status_code == 404
    # Registering the id again starts from scratch: no old trials.
    api.register(spec)
    assert api.get(f"/jobs/{job}/trials").json() == []
