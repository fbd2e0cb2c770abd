"""Runs across hosts (/jobs/{job_id}/runs/...): one trial for every host of a run,
one report per epoch to the optimizer (energy summed over the hosts, the slowest
host's time), one power limit from every host's profile, and a silent host ending
the run as Failed, naming it. Every host of the endpoint runs this file."""

from __future__ import annotations

import time

from conftest import job_spec, unique

RUN_VIEW_KEYS = {
    "job_id", "run_id", "trial_number", "batch_size", "hosts", "joined", "status",
    "stop_train", "converged", "message", "power_limit", "profiled", "reported_epoch",
    "epochs",
}


def new_job(api, **overrides) -> str:
    spec = job_spec("mh", **overrides)
    api.register(spec)
    return spec["job_id"]


def join(api, job_id, run_id, rank, hosts=3, **extra):
    body = {"run_id": run_id, "hosts": hosts, "host_rank": rank, "host_name": f"node{rank}"}
    body.update(extra)
    return api.post(f"/jobs/{job_id}/runs", body)


def call(api, job_id, run_id, action, body):
    return api.post(f"/jobs/{job_id}/runs/{run_id}/{action}", body)


def host_report(rank, epoch, time_s, energy, metric=0.1, bound=None):
    body = {"host_rank": rank, "time": time_s, "energy": energy, "metric": metric, "current_epoch": epoch}
    if bound is not None:
        body["energy_uncertainty_j"] = bound
    return body


def trials(api, job_id):
    r = api.get(f"/jobs/{job_id}/trials")
    assert r.status_code == 200, r.text
    return r.json()


def test_every_host_gets_one_trial_and_one_batch_size(api):
    job_id = new_job(api)
    run_id = unique("slurm")
    views = []
    for rank in range(3):
        r = join(api, job_id, run_id, rank)
        assert r.status_code == 200, r.text
        assert set(r.json()) == RUN_VIEW_KEYS
        views.append(r.json())
    assert len({(v["trial_number"], v["batch_size"]) for v in views}) == 1, views
    assert views[-1]["joined"] == 3 and views[-1]["status"] == "running"
    # A retried join changes nothing; the job has one trial.
    assert join(api, job_id, run_id, 1).json()["trial_number"] == views[0]["trial_number"]
    assert len(trials(api, job_id)) == 1
    r = api.get(f"/jobs/{job_id}/runs/{run_id}")
    assert r.status_code == 200 and r.json()["joined"] == 3, r.text


def test_one_report_per_epoch_summed_energy_slowest_time(api):
    job_id = new_job(api, max_epochs=2, target_metric=0.99)
    run_id = unique("torch")
    n = [join(api, job_id, run_id, rank).json() for rank in range(3)][0]["trial_number"]
    energies = [100.0, 200.0, 300.0]
    times = [10.0, 12.0, 11.0]
    for epoch in (1, 2):
        for rank in range(3):
            r = call(api, job_id, run_id, "report", host_report(rank, epoch, times[rank] * epoch, energies[rank] * epoch))
            assert r.status_code == 200, r.text
            v = r.json()
            # The optimizer hears of epoch e only once the last host reported it.
            assert v["reported_epoch"] == (epoch if rank == 2 else epoch - 1), v
        # A repeated report is not counted twice.
        again = call(api, job_id, run_id, "report", host_report(0, epoch, 1.0, 1.0)).json()
        assert again["epochs"][-1]["energy"] == sum(energies) * epoch
    v = api.get(f"/jobs/{job_id}/runs/{run_id}").json()
    assert [e["energy"] for e in v["epochs"]] == [600.0, 1200.0]
    assert [e["time"] for e in v["epochs"]] == [12.0, 24.0]
    assert v["stop_train"] and v["status"] == "stopped", v
    (trial,) = trials(api, job_id)
    assert trial["trial_number"] == n
    assert trial["status"] == "Succeeded" and trial["energy"] == 1200.0 and trial["time"] == 24.0, trial
    # Every host's done leaves the recorded trial as it is.
    for rank in range(3):
        assert call(api, job_id, run_id, "done", {"host_rank": rank}).status_code == 200
    (trial,) = trials(api, job_id)
    assert trial["status"] == "Succeeded", trial


def test_one_power_limit_from_every_hosts_profile(api):
    job_id = new_job(api)
    run_id = unique("run")
    for rank in range(2):
        join(api, job_id, run_id, rank, hosts=2, selector={"kind": "energy"})

    def window(limit, energy, time_s):
        return {"power_limit": limit, "energy": energy, "time": time_s, "steps": 10}

    # Alone, host 0 would pick 150 W; host 1 is slow there, so the sum is least at 200 W.
    r = call(api, job_id, run_id, "profile", {"host_rank": 0, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0), window(200, 25.0, 1.2), window(150, 20.0, 1.5)]})
    assert r.status_code == 200 and r.json()["power_limit"] is None, r.text
    r = call(api, job_id, run_id, "profile", {"host_rank": 1, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0), window(200, 24.0, 1.2), window(150, 40.0, 3.0)]})
    assert r.status_code == 200, r.text
    assert r.json()["power_limit"] == 200 and r.json()["profiled"] == 2, r.json()
    assert call(api, job_id, run_id, "heartbeat", {"host_rank": 0}).json()["power_limit"] == 200


def test_the_run_sums_its_hosts_energy_bounds_and_its_trial_keeps_them(api):
    job_id = new_job(api, max_epochs=2, target_metric=0.99)
    run_id = unique("bound")
    for rank in range(3):
        join(api, job_id, run_id, rank)
    bounds = [1.0, 2.0, 0.5]
    for epoch in (1, 2):
        for rank in range(3):
            r = call(api, job_id, run_id, "report", host_report(rank, epoch, 10.0 * epoch, 100.0 * epoch, bound=bounds[rank] * epoch))
            assert r.status_code == 200, r.text
    v = api.get(f"/jobs/{job_id}/runs/{run_id}").json()
    assert [e["energy_uncertainty_j"] for e in v["epochs"]] == [3.5, 7.0], v
    (trial,) = trials(api, job_id)
    assert (trial["status"], trial["energy"], trial["energy_uncertainty_j"]) == ("Succeeded", 600.0, 7.0), trial
    # One host without a bound: the run's epoch, and its trial, have none.
    job_id = new_job(api, max_epochs=1, target_metric=0.99)
    for rank in range(2):
        join(api, job_id, run_id, rank, hosts=2)
    call(api, job_id, run_id, "report", host_report(0, 1, 10.0, 100.0, bound=1.0))
    v = call(api, job_id, run_id, "report", host_report(1, 1, 10.0, 100.0)).json()
    assert v["stop_train"] and "energy_uncertainty_j" not in v["epochs"][0], v
    (trial,) = trials(api, job_id)
    assert trial["status"] == "Succeeded" and "energy_uncertainty_j" not in trial, trial


def test_the_combined_profile_sums_the_bounds_and_notes_what_it_cannot_tell_apart(api):
    job_id = new_job(api)
    run_id = unique("run")
    for rank in range(2):
        join(api, job_id, run_id, rank, hosts=2, selector={"kind": "energy"})

    def window(limit, energy, time_s, bound=None):
        w = {"power_limit": limit, "energy": energy, "time": time_s, "steps": 10}
        if bound is not None:
            w["energy_uncertainty_j"] = bound
        return w

    # Per step over both hosts: 300 W 6.0 J, 200 W 4.9 J (the least), 150 W 5.0 J,
    # each +- 0.2 J: 150 W lies within the bounds of 200 W.
    r = call(api, job_id, run_id, "profile", {"host_rank": 0, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0, 1.0), window(200, 24.0, 1.2, 1.0), window(150, 25.0, 1.5, 1.0)]})
    assert r.status_code == 200, r.text
    r = call(api, job_id, run_id, "profile", {"host_rank": 1, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0, 1.0), window(200, 25.0, 1.2, 1.0), window(150, 25.0, 1.5, 1.0)]})
    assert r.status_code == 200, r.text
    assert (r.json()["power_limit"], r.json()["uncertain"]) == (200, [200, 150]), r.json()
    (run,) = api.state(job_id)["runs"]
    assert [p["energy_uncertainty_j"] for p in run["profile"]] == [0.2, 0.2, 0.2], run
    assert run["uncertain"] == [200, 150], run
    # A host that measured no bound: the combined limits have none, and no note.
    run_id = unique("run")
    for rank in range(2):
        join(api, job_id, run_id, rank, hosts=2, selector={"kind": "energy"})
    call(api, job_id, run_id, "profile", {"host_rank": 0, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0, 1.0), window(200, 24.0, 1.2, 1.0), window(150, 25.0, 1.5, 1.0)]})
    r = call(api, job_id, run_id, "profile", {"host_rank": 1, "gpu_count": 8, "measurements": [
        window(300, 30.0, 1.0), window(200, 25.0, 1.2), window(150, 25.0, 1.5)]})
    assert r.json()["power_limit"] == 200 and "uncertain" not in r.json(), r.json()
    run = [x for x in api.state(job_id)["runs"] if x["run_id"] == run_id][0]
    assert all("energy_uncertainty_j" not in p for p in run["profile"]), run


def test_a_silent_host_fails_the_run_naming_it(api):
    job_id = new_job(api)
    run_id = unique("run")
    n = [join(api, job_id, run_id, rank, host_timeout_s=1).json() for rank in range(3)][0]["trial_number"]
    # Hosts 0 and 1 keep calling; host 2 falls silent. Within a bounded time the
    # others' calls answer the failure.
    deadline = time.monotonic() + 20
    v = None
    while time.monotonic() < deadline:
        for rank in (0, 1):
            r = call(api, job_id, run_id, "heartbeat", {"host_rank": rank})
            assert r.status_code == 200, r.text
            v = r.json()
        if v["status"] != "running":
            break
        time.sleep(0.1)
    assert v["status"] == "failed" and v["stop_train"], v
    assert v["message"].startswith("host 2 (node2) sent nothing"), v
    (trial,) = trials(api, job_id)
    assert trial["trial_number"] == n and trial["status"] == "Failed", trial
    # The outcome stays readable to every host, and is not ended twice.
    assert call(api, job_id, run_id, "done", {"host_rank": 2}).json()["status"] == "failed"
    assert api.get(f"/jobs/{job_id}/runs/{run_id}").json()["status"] == "failed"


def test_hostile_run_requests_name_the_field_and_change_nothing(api):
    job_id = new_job(api)
    run_id = unique("run")
    for body, field in [
        ({"run_id": run_id, "hosts": 0, "host_rank": 0}, "hosts"),
        ({"run_id": run_id, "hosts": 10**9, "host_rank": 0}, "hosts"),
        ({"run_id": run_id, "hosts": -2, "host_rank": 0}, "hosts"),
        ({"run_id": run_id, "hosts": 2, "host_rank": 2}, "host_rank"),
        ({"run_id": "a/b", "hosts": 2, "host_rank": 0}, "run_id"),
        ({"run_id": run_id, "hosts": 2, "host_rank": 0, "host_timeout_s": 0}, "host_timeout_s"),
        ({"run_id": run_id, "hosts": 2, "host_rank": 0, "host_name": "x" * 33}, "host_name"),
        ({"run_id": run_id, "hosts": "2", "host_rank": 0}, "hosts"),
    ]:
        r = api.post(f"/jobs/{job_id}/runs", body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["message"].startswith(f"{field}:"), (field, r.text)
    assert trials(api, job_id) == []
    before = api.state(job_id)
    join(api, job_id, run_id, 0, hosts=2)
    join(api, job_id, run_id, 1, hosts=2)
    state = api.state(job_id)
    for body, field in [
        (host_report(0, 1, float("nan"), 1.0), None),
        (host_report(0, 1, -1.0, 1.0), "time"),
        (host_report(0, 1, 1.0, 1e300), "energy"),
        (host_report(0, 0, 1.0, 1.0), "current_epoch"),
        (host_report(0, 3, 1.0, 1.0), "current_epoch"),
        (host_report(7, 1, 1.0, 1.0), "host_rank"),
        (host_report(0, 1, 1.0, 1.0, bound=-0.5), "energy_uncertainty_j"),
        (host_report(0, 1, 1.0, 1.0, bound="NaN"), "energy_uncertainty_j"),
        (host_report(0, 1, 1.0, 1.0, bound=[1.0]), "energy_uncertainty_j"),
        # Its share of the run's bound: two hosts, half of 1e18 J each.
        (host_report(0, 1, 1.0, 1.0, bound=6e17), "energy_uncertainty_j"),
    ]:
        r = call(api, job_id, run_id, "report", body)
        assert 400 <= r.status_code < 500, (body, r.text)
        if field:
            assert r.json()["message"].startswith(f"{field}:"), (field, r.text)
    r = call(api, job_id, run_id, "profile", {"host_rank": 0, "gpu_count": 8, "measurements": [
        {"power_limit": 300, "energy": 1.0, "time": 0.0, "steps": 10}]})
    assert r.status_code == 422 and r.json()["message"].startswith("measurements.time:"), r.text
    for bad in (-1.0, "wide"):
        r = call(api, job_id, run_id, "profile", {"host_rank": 0, "gpu_count": 8, "measurements": [
            {"power_limit": 300, "energy": 1.0, "time": 1.0, "steps": 10, "energy_uncertainty_j": bad}]})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["message"].startswith("measurements"), (bad, r.text)
        assert "energy_uncertainty_j" in r.json()["message"], (bad, r.text)
    assert api.state(job_id)["runs"] == state["runs"]
    assert "runs" not in before
    # Another host count for the run: 409; an unknown run or action: 404; GET on an action: 405.
    assert join(api, job_id, run_id, 0, hosts=3).status_code == 409
    assert call(api, job_id, unique("none"), "heartbeat", {"host_rank": 0}).status_code == 404
    assert call(api, job_id, run_id, "other", {"host_rank": 0}).status_code == 404
    assert api.get(f"/jobs/{job_id}/runs/{run_id}/heartbeat").status_code == 405
    assert api.post(f"/jobs/{unique('nojob')}/runs", {"run_id": "r", "hosts": 2, "host_rank": 0}).status_code == 404


def test_openapi_lists_the_run_routes(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert "post" in paths["/jobs/{job_id}/runs"]
    assert "get" in paths["/jobs/{job_id}/runs/{run_id}"]
    for action in ("heartbeat", "profile", "report", "done"):
        assert "post" in paths[f"/jobs/{{job_id}}/runs/{{run_id}}/{action}"], action


def test_each_hosts_energy_is_bounded_so_their_sum_is_taken(api):
    # Issue 26: each host's 1e18 J was accepted, then their sum failed the run.
    job_id = new_job(api, max_epochs=5, target_metric=0.99)
    run_id = unique("big")
    for rank in range(2):
        assert join(api, job_id, run_id, rank, hosts=2).status_code == 200
    r = call(api, job_id, run_id, "report", host_report(0, 1, 10.0, 1e18))
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("energy:"), r.text
    for rank in range(2):
        r = call(api, job_id, run_id, "report", host_report(rank, 1, 10.0, 5e17))
        assert r.status_code == 200, r.text
    v = r.json()
    assert (v["status"], v["reported_epoch"], v["epochs"][-1]["energy"]) == ("running", 1, 1e18), v


def test_host_names_that_reorder_or_hide_text_are_refused(api):
    job_id = new_job(api)
    for name in ["evil\u202egnp.exe", "a\u200bb", "x\u2066y"]:
        r = join(api, job_id, unique("bidi"), 0, host_name=name)
        assert r.status_code == 422, (name, r.text)
        assert r.json()["message"].startswith("host_name:"), r.text
    assert trials(api, job_id) == []


def test_a_finished_run_that_left_the_kept_ones_answers_its_outcome(api):
    # Issue 26: re-joining a finished run evicted from the 16 kept opened a new trial.
    job_id = new_job(api, max_epochs=1, target_metric=0.99)
    run_ids = [unique("old")] + [unique("later") for _ in range(16)]
    first = None
    for run_id in run_ids:
        r = join(api, job_id, run_id, 0, hosts=1)
        assert r.status_code == 200, r.text
        r = call(api, job_id, run_id, "report", host_report(0, 1, 1.0, 10.0, metric=1.0))
        assert r.status_code == 200 and r.json()["stop_train"], r.text
        first = first or r.json()
    assert run_ids[0] not in {run["run_id"] for run in api.state(job_id)["runs"]}
    r = join(api, job_id, run_ids[0], 0, hosts=1)
    assert r.status_code == 200, r.text
    v = r.json()
    assert (v["trial_number"], v["status"], v["stop_train"], v["converged"]) == (
        first["trial_number"], "stopped", True, True), v
    r = call(api, job_id, run_ids[0], "heartbeat", {"host_rank": 0})
    assert r.status_code == 200 and r.json()["trial_number"] == first["trial_number"], r.text
    assert len(trials(api, job_id)) == 17, "no new trial"
