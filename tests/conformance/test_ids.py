"""Ids through URLs (issue 26): every id the endpoint accepts round-trips through a
client that percent-encodes it in a path (the agent and the page encode `:` as
`%3A`; the host decodes each path segment once), and an id no URL can carry is
refused at registration or join (422 naming the field): `.` and `..` (URL clients
remove such segments) and a job id equal to a route's literal segment in its place
(`batch_size`: `GET /jobs/batch_size` dispatches a trial). The CSV export's job id
cell never starts a spreadsheet formula. Every host of the endpoint runs this file."""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import pytest

from conftest import job_spec, unique

PROFILE = {
    "batch_size": 32,
    "phase": "train",
    "gpu_model": "V100",
    "measurements": [{"power_limit": 300, "average_power": 131.9, "throughput": 31.0}],
}


def enc(s: str) -> str:
    """A path segment as the agent and the page send it (`:` as `%3A`)."""
    return quote(s, safe="")


def test_colon_ids_round_trip_through_percent_encoded_paths(api):
    spec = job_spec("ag:colon", max_epochs=2, target_metric=0.99)
    job = spec["job_id"]
    api.register(spec)
    j = enc(job)
    assert "%3A" in j
    for suffix in ["", "/summary", "/trials", "/profiles"]:
        r = api.get(f"/jobs/{j}{suffix}", exact_url=True)
        assert r.status_code == 200, (suffix, r.status_code, r.text)
    assert api.get(f"/jobs/{j}", exact_url=True).json()["job_id"] == job
    # The power profile the agent posts is stored, not dropped with a 404.
    r = api.post(f"/jobs/{j}/profiles", PROFILE, exact_url=True)
    assert r.status_code == 201, r.text
    assert api.state(job)["profiles"] == [PROFILE]

    # A run id with `:`: every epoch report reaches the trial.
    run = unique("r:1")
    r = api.post(f"/jobs/{j}/runs", {"run_id": run, "hosts": 1, "host_rank": 0}, exact_url=True)
    assert r.status_code == 200, r.text
    trial = r.json()["trial_number"]
    base = f"/jobs/{j}/runs/{enc(run)}"
    for epoch, metric in [(1, 0.1), (2, 1.0)]:
        body = {"host_rank": 0, "time": 10.0 * epoch, "energy": 100.0 * epoch, "metric": metric,
                "current_epoch": epoch}
        r = api.post(f"{base}/report", body, exact_url=True)
        assert r.status_code == 200, r.text
        assert r.json()["reported_epoch"] == epoch, r.json()
    assert r.json()["stop_train"] is True and r.json()["converged"] is True, r.json()
    r = api.get(base, exact_url=True)
    assert r.status_code == 200 and r.json()["run_id"] == run, r.text
    rows = api.get(f"/jobs/{j}/trials", exact_url=True).json()
    assert [(t["trial_number"], t["status"], t["energy"]) for t in rows] == [(trial, "Succeeded", 200.0)]


@pytest.mark.parametrize("job_id,prefix", [(".", "."), ("..", "."), ("batch_size", "batch")])
def test_job_ids_no_url_can_carry_are_refused(api, job_id, prefix):
    r = api.post("/jobs", job_spec(prefix, job_id=job_id))
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("job_id:"), r.text


@pytest.mark.parametrize("run_id", [".", ".."])
def test_run_ids_no_url_can_carry_are_refused(api, run_id):
    spec = job_spec("ids")
    api.register(spec)
    r = api.post(f"/jobs/{spec['job_id']}/runs", {"run_id": run_id, "hosts": 1, "host_rank": 0})
    assert r.status_code == 422, r.text
    assert r.json()["message"].startswith("run_id:"), r.text
    assert api.get(f"/jobs/{spec['job_id']}/trials").json() == []


def test_csv_job_id_cell_never_starts_a_formula(api):
    spec = job_spec("-csv")
    job = spec["job_id"]
    api.register(spec)
    api.predict(job)
    r = api.get(f"/jobs/{job}/trials", params={"format": "csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["job_id"] for row in rows] == ["'" + job], r.text
    assert rows[0]["trial_number"] == "1"
