"""Reliability: no number the endpoint accepts may brick a job, degenerate but
valid results still give a batch size, and a late report gets the same answer
wherever its trial lives (issue 17). Runs on every host."""

from __future__ import annotations

import math

from conftest import job_spec

RECENT_TRIALS = 64


def finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_everywhere(v) for v in value)
    return True


def report_body(trial, time, energy, metric, epoch):
    return {"job_id": trial["job_id"], "batch_size": trial["batch_size"],
            "trial_number": trial["trial_number"], "time": time, "energy": energy,
            "metric": metric, "current_epoch": epoch}


def test_the_largest_accepted_numbers_keep_the_job_readable_and_deletable(api):
    spec = job_spec("rel", max_power=1e9, mab_prior_mean=-1e18, mab_prior_precision=1e18,
                    beta_knob=1e6, eta_knob=0.0, window_size=2, max_epochs=1, batch_sizes=[8, 16],
                    default_batch_size=16)
    job = api.register(spec)["job_id"]
    for i in range(12):
        t = api.predict(job)
        time, energy = (1e9, 1e18) if i % 2 == 0 else (0.0, 5e-324)
        r = api.post("/report", report_body(t, time, energy, 1.0, 1))
        assert r.status_code == 200, r.text
        state = api.state(job)
        assert finite_everywhere(state), state
        assert state["min_cost"] is not None
    # The job is still whole: re-registering matches, and it deletes.
    assert api.post("/jobs", spec).status_code == 200
    r = api.request("DELETE", "/jobs", params={"job_id": job})
    assert r.status_code == 200, r.text


def test_a_zero_cost_result_does_not_stop_the_job_converging(api):
    job = api.register(job_spec("rel", max_epochs=1))["job_id"]
    t = api.predict(job)
    r = api.report(t, 0.0, 0.0, 0.9, 1)
    assert (r["stop_train"], r["converged"]) == (True, True), r
    for _ in range(12):
        t = api.predict(job)
        r = api.report(t, 10.0, 1000.0, 0.9, 1)
        assert r["converged"] is True, r


def test_a_single_batch_size_that_never_converges_still_gives_a_batch_size(api):
    job = api.register(job_spec("rel", batch_sizes=[16], default_batch_size=16, max_epochs=1))["job_id"]
    for _ in range(8):
        t = api.predict(job)
        assert t["batch_size"] == 16
        r = api.report(t, 10.0, 1000.0, 0.0, 1)
        assert (r["stop_train"], r["converged"]) == (True, False), r


def test_identical_costs_keep_giving_batch_sizes(api):
    job = api.register(job_spec("rel", max_epochs=1, batch_sizes=[8, 16, 32], default_batch_size=16))["job_id"]
    for _ in range(16):
        t = api.predict(job)
        assert api.report(t, 10.0, 1000.0, 0.9, 1)["stop_train"] is True


def test_a_late_report_gets_the_same_answer_in_the_document_and_in_the_archive(api):
    job = api.register(job_spec("rel", max_epochs=1, num_pruning_rounds=0))["job_id"]
    ended = api.predict(job)
    done = api.predict(job)
    api.report(done, 1.0, 10.0, 0.9, 1)
    assert api.request("PATCH", "/trials", ended).status_code == 200

    def answers():
        failed = api.post("/report", report_body(ended, 1.0, 10.0, 0.9, 1))
        succeeded = api.post("/report", report_body(done, 1.0, 10.0, 0.9, 1))
        wrong = dict(done, batch_size=done["batch_size"] * 2 + 1)
        mismatch = api.post("/report", report_body(wrong, 1.0, 10.0, 0.9, 1))
        invalid = api.post("/report", report_body(ended, -1.0, 10.0, 0.9, 1))
        return [(r.status_code, r.json()) for r in (failed, succeeded, mismatch, invalid)]

    in_document = answers()
    assert in_document[0][0] == 400, in_document
    assert in_document[1][0] == 200 and in_document[1][1]["stop_train"] is True, in_document
    assert [a[0] for a in in_document[2:]] == [400, 422], in_document
    for _ in range(RECENT_TRIALS + 2):
        t = api.predict(job)
        api.report(t, 1.0, 10.0, 0.9, 1)
    numbers = {t["trial_number"] for t in api.state(job)["recent_trials"]}
    assert ended["trial_number"] not in numbers and done["trial_number"] not in numbers
    assert answers() == in_document
