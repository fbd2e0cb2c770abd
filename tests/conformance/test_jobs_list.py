"""GET /jobs: the job list, newest first, cursor-paged, bounded, with per-job
summaries that agree with each job's document."""

from __future__ import annotations

import pytest

from conftest import job_spec


def list_page(api, **params) -> dict:
    r = api.get("/jobs", params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    assert set(page) == {"jobs", "next_cursor"}, page
    return page


def order_key(summary: dict) -> tuple:
    return (summary["created_ms"], summary["job_id"])


def find_all(api, ids: set[str], limit: int = 50, max_pages: int = 200) -> dict:
    """Pages from the top until every id in `ids` is seen; checks the order and
    the page bounds on the way. Returns the summaries of `ids` by id."""
    found: dict[str, dict] = {}
    previous = None
    cursor = None
    for _ in range(max_pages):
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = list_page(api, **params)
        assert len(page["jobs"]) <= limit
        for s in page["jobs"]:
            if previous is not None:
                assert order_key(s) < previous, f"not newest first: {s['job_id']} after {previous}"
            previous = order_key(s)
            if s["job_id"] in ids:
                found[s["job_id"]] = s
        cursor = page["next_cursor"]
        if found.keys() == ids or cursor is None:
            break
    assert found.keys() == ids, f"missing from the list: {ids - found.keys()}"
    return found


def test_list_pages_newest_first_and_summaries_match_documents(api):
    specs = [job_spec("list") for _ in range(3)]
    for s in specs:
        api.register(s)
    ids = [s["job_id"] for s in specs]
    # The last job runs two trials: one reaches the target, one is ended early.
    energies = [1500.0, 900.0]
    t1 = api.predict(ids[-1])
    api.report(t1, time=20.0, energy=energies[0], metric=0.9, epoch=1)
    t2 = api.predict(ids[-1])
    r = api.request("PATCH", "/trials", t2)
    assert r.status_code == 200, r.text

    # Pages of two, from the top, until all three are seen.
    found = find_all(api, set(ids), limit=2)
    for job_id in ids:
        s, doc = found[job_id], api.state(job_id)
        assert s["stage"] == doc["stage"]
        assert s["best_batch_size"] == doc["min_cost_batch_size"]
        assert s["min_cost"] == doc.get("min_cost")
        assert s["trials"] == doc["next_trial_number"] - 1
        assert s["created_ms"] == doc["created_ms"]
        assert s["totals"] == doc["totals"]
        assert s["gpu_model"] == "V100" and s["number_of_gpus"] == 1
        assert s["default_batch_size"] == 32
        assert s["best_power_limit"] is None  # no profile posted
    busy = found[ids[-1]]
    assert busy["trials"] == 2 and busy["open_trials"] == 0
    assert busy["totals"]["finished_trials"] == 1
    assert busy["totals"]["failed_trials"] == 1
    assert busy["totals"]["energy"] == energies[0]
    assert busy["totals"]["time"] == 20.0
    assert busy["totals"]["cost"] > 0
    assert busy["last_activity_ms"] >= busy["created_ms"]
    idle = found[ids[0]]
    assert idle["trials"] == 0 and idle["totals"]["finished_trials"] == 0
    assert idle["last_activity_ms"] == idle["created_ms"]


def test_list_shows_the_chosen_power_limit(api):
    spec = job_spec("listpl")
    api.register(spec)
    job_id = spec["job_id"]
    profile = {
        "batch_size": 32, "phase": "train", "gpu_model": "V100",
        "measurements": [
            {"power_limit": 300, "average_power": 290.0, "throughput": 1000.0},
            {"power_limit": 200, "average_power": 195.0, "throughput": 950.0},
            {"power_limit": 100, "average_power": 99.0, "throughput": 300.0},
        ],
    }
    r = api.post(f"/jobs/{job_id}/profiles", profile)
    assert r.status_code in (200, 201), r.text
    found = find_all(api, {job_id})
    r = api.get(f"/jobs/{job_id}/summary")
    assert r.status_code == 200, r.text
    assert r.json() == found[job_id]
    # 200 W: 5% slower than 300 W for a third less power; 100 W is over 3x slower.
    assert found[job_id]["best_power_limit"] == 200


def test_deleted_jobs_leave_the_list(api):
    spec = job_spec("listdel")
    api.register(spec)
    keep = job_spec("listdel")
    api.register(keep)
    r = api.request("DELETE", "/jobs", params={"job_id": spec["job_id"]})
    assert r.status_code == 200, r.text
    found = find_all(api, {keep["job_id"]})
    assert spec["job_id"] not in found
    page = list_page(api, limit=200)
    assert spec["job_id"] not in [s["job_id"] for s in page["jobs"]]


def test_summary_of_an_unknown_job_is_404(api):
    r = api.get("/jobs/no-such-job-listed/summary")
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    "params,field",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "zz"}, "cursor"),
        ({"cursor": "6869"}, "cursor"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(api, params, field):
    r = api.get("/jobs", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith(f"{field}:"), r.text


def test_page_size_defaults_and_is_bounded(api):
    for _ in range(3):
        api.register(job_spec("listsize"))
    page = list_page(api)
    assert 3 <= len(page["jobs"]) <= 50
    assert len(list_page(api, limit=1)["jobs"]) == 1
    assert len(list_page(api, limit=200)["jobs"]) <= 200


def test_the_summary_says_how_sure_its_saving_and_totals_are(api):
    """Savings carry one standard error of the default's estimate once two runs at
    the default reached the target (none with one); the totals carry the energy
    bound while every finished run gave one."""
    spec = job_spec("listsure", batch_sizes=[32])
    api.register(spec)
    job_id = spec["job_id"]

    def run(time, energy, bound=None):
        t = api.predict(job_id)
        assert t["batch_size"] == 32, t
        body = {**t, "time": time, "energy": energy, "metric": 0.9, "current_epoch": 1}
        if bound is not None:
            body["energy_uncertainty_j"] = bound
        r = api.post("/report", body)
        assert r.status_code == 200, r.text
        assert r.json()["converged"], r.text
        r = api.get(f"/jobs/{job_id}/summary")
        assert r.status_code == 200, r.text
        return r.json()

    # One basis run: an estimate, its uncertainty unknown (absent, not zero).
    s = run(10.0, 1000.0, bound=1.5)
    v = s["savings"]
    assert v["basis_runs"] == 1 and v["runs"] == 1, v
    assert "cost_uncertainty" not in v and "cost_fraction_uncertainty" not in v, v
    assert s["totals"]["energy_uncertainty_j"] == 1.5, s["totals"]

    # Two: the standard error of the mean of costs c1, c2 is |c1 - c2| / 2 per run,
    # |c1 - c2| over the two runs.
    s = run(12.0, 1300.0, bound=2.0)
    params = api.state(job_id)["params"]
    eta, max_power = params["eta_knob"], params["max_power"]
    c1, c2 = (eta * e + (1 - eta) * max_power * t for t, e in [(10.0, 1000.0), (12.0, 1300.0)])
    v = s["savings"]
    assert v["basis_runs"] == 2 and v["runs"] == 2, v
    assert abs(v["default_cost"] - (c1 + c2)) <= 1e-9 * (c1 + c2), v
    assert abs(v["cost_uncertainty"] - abs(c1 - c2)) <= 1e-9 * abs(c1 - c2), v
    assert abs(v["cost_fraction_uncertainty"] - abs(c1 - c2) / (c1 + c2)) <= 1e-12, v
    assert s["totals"]["energy_uncertainty_j"] == 3.5, s["totals"]
    assert found_summary(api, job_id) == s

    # A run without a bound: the totals' bound is unknown from then on (never invented).
    s = run(11.0, 1100.0)
    assert "energy_uncertainty_j" not in s["totals"], s["totals"]
    assert s["savings"]["basis_runs"] == 3 and s["savings"]["cost_uncertainty"] > 0, s
    assert s["totals"] == api.state(job_id)["totals"]


def found_summary(api, job_id: str) -> dict:
    """The job's summary as the list shows it."""
    return find_all(api, {job_id})[job_id]
