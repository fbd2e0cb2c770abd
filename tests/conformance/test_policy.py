"""A job registered with the wattwise policy (`"policy": "wattwise"`), over HTTP.

The optional `policy` field is accepted and echoed, an unknown one is refused, and the
job walks from the default batch size down until the cost rises, stops a first run
at twice the best expected cost, goes up one size, and then exploits the cheapest.
"""

from __future__ import annotations

from conftest import expect_run, job_spec, report, train, unique


def test_wattwise_policy_job(api):
    spec = job_spec("pol", policy="wattwise")
    job = spec["job_id"]
    created = api.register(spec)
    assert created["policy"] == "wattwise"
    # The same job without the field is Zeus's: another configuration.
    zeus = dict(spec)
    del zeus["policy"]
    assert api.post("/jobs", zeus).status_code == 409
    assert api.state(job)["params"]["policy"] == "wattwise"

    # The default first; a run asking meanwhile gets the best known size (the default).
    t = api.predict(job)
    assert (t["batch_size"], t["trial_number"]) == (32, 1)
    c = api.predict(job)
    assert c["batch_size"] == 32
    assert report(api, t, 1, 0.1)["stop_train"] is False
    assert train(api, t, 5)["converged"] is True
    assert api.request("PATCH", "/trials", c).status_code == 200

    # Down: 16 is cheaper; 8 costs 7500 per epoch and stops past 2 x 12500.
    expect_run(api, job, 16)
    r = expect_run(api, job, 8, converged=False)
    assert "exceeded the cost upper bound" in r["message"]
    # Up: the default is within 30% of the best, so 64 is tried; it is 44% above.
    expect_run(api, job, 64)
    # Then only 16 is within 15% of the best: every run gets it.
    for _ in range(4):
        expect_run(api, job, 16)
    state = api.state(job)
    assert state["stage"] == "MAB"
    arms = state["wattwise"]["arms"]
    assert [a["runs"] for a in arms] == [1, 5, 1, 1, 0]
    assert [a["successes"] for a in arms] == [0, 5, 1, 1, 0]


def test_unknown_policy_is_refused(api):
    r = api.post("/jobs", job_spec("pol", policy="greedy"))
    assert r.status_code == 422, r.text
    assert "policy" in r.json()["message"]


def test_wattwise_lone_batch_size_carries_on_after_missing_the_target(api):
    # Issue 26: this job got 400 "no batch size converged" on every later request.
    spec = job_spec("pol", policy="wattwise", batch_sizes=[32], default_batch_size=32, max_epochs=3)
    job = spec["job_id"]
    api.register(spec)
    for _ in range(3):
        t = api.predict(job)
        assert t["batch_size"] == 32
        for epoch in range(1, 4):
            r = api.report(t, 10.0 * epoch, 1000.0 * epoch, 0.1, epoch)
        assert (r["stop_train"], r["converged"]) == (True, False), r


def test_wattwise_run_that_cost_nothing_bounds_nothing(api):
    spec = job_spec("pol", policy="wattwise")
    job = spec["job_id"]
    api.register(spec)
    t = api.predict(job)
    r = api.report(t, 0.0, 0.0, 0.9, 1)
    assert (r["stop_train"], r["converged"]) == (True, True), r
    # The next run costs 1550 after one epoch: no bound of "beta x 0" stops it.
    t = api.predict(job)
    r = api.report(t, 1.0, 1400.0, 0.1, 1)
    assert r["stop_train"] is False, r
    r = api.report(t, 2.0, 2800.0, 0.9, 2)
    assert (r["stop_train"], r["converged"]) == (True, True), r
    assert api.state(job)["wattwise"]["arms"][1]["successes"] == 1


def test_workload_field_is_accepted_echoed_and_checked(api):
    # The optional `workload` (issue 27): an id, echoed and stored; absent for Zeus's
    # client. The first job of a workload has no one to learn from: it decides as without it.
    spec = job_spec("wl", policy="wattwise", workload=unique("imagenet-resnet50"))
    job = spec["job_id"]
    created = api.register(spec)
    assert created["workload"] == spec["workload"]
    assert api.state(job)["params"]["workload"] == spec["workload"]
    t = api.predict(job)
    assert t["batch_size"] == 32
    assert "warm" not in api.state(job)["wattwise"]
    r = api.post("/jobs", job_spec("wl", workload="two words"))
    assert r.status_code == 422, r.text
    assert "workload" in r.json()["message"]
    plain = api.register(job_spec("wl"))
    assert "workload" not in plain


def first_recurrences(api, job):
    """The walk of `test_wattwise_policy_job`: 32, 16, 8 (stopped), 64."""
    expect_run(api, job, 32)
    expect_run(api, job, 16)
    expect_run(api, job, 8, converged=False)
    expect_run(api, job, 64)


def test_jobs_of_one_workload_share_what_they_learned(api):
    # Issue 27 on an endpoint: the wattwise jobs naming one workload share their
    # epochs to target per batch size through the store (the workload's document).
    workload = unique("wl")
    first = job_spec("wl", policy="wattwise", workload=workload)
    a = first["job_id"]
    api.register(first)
    first_recurrences(api, a)
    taught = api.get(f"/jobs/{a}/summary").json()
    assert taught["workload"] == workload
    # Its three runs that reached the target teach; the one stopped early does not.
    assert taught["sharing"] == {
        "from": [], "reused_runs": 0, "reused_batch_sizes": [], "probed": [],
        "dropped": False, "taught_runs": 3,
    }, taught

    # A second job of the workload (another GPU) starts warm from the first's runs.
    second = job_spec("wl", policy="wattwise", workload=workload, gpu_model="A40")
    b = second["job_id"]
    api.register(second)
    t = api.predict(b)
    assert t["trial_number"] == 1
    warm = api.state(b)["wattwise"]["warm"]
    assert warm["from"] == [a], warm
    assert [s[0] for s in warm["shared"]["sizes"]] == [16, 32, 64], warm
    sharing = api.get(f"/jobs/{b}/summary").json()["sharing"]
    assert (sharing["from"], sharing["reused_runs"], sharing["reused_batch_sizes"]) == (
        [a], 3, [16, 32, 64]), sharing
    assert sharing["dropped"] is False and sharing["taught_runs"] == 0
    # The list shows the same.
    listed = [j for j in api.get("/jobs", params={"limit": 200}).json()["jobs"] if j["job_id"] == b]
    assert listed and listed[0]["sharing"]["from"] == [a]

    # A job without the field decides exactly as before and shares nothing.
    plain = job_spec("wl", policy="wattwise")
    api.register(plain)
    first_recurrences(api, plain["job_id"])
    state = api.state(plain["job_id"])
    assert "warm" not in state["wattwise"] and "taught" not in state["wattwise"]
    assert "sharing" not in api.get(f"/jobs/{plain['job_id']}/summary").json()
