"""Every route of the endpoint: status codes, content types and bodies."""

from __future__ import annotations

import csv
import io

import pytest

from conftest import job_spec, unique

TRIAL_ID_KEYS = {"job_id", "batch_size", "trial_number"}
REPORT_KEYS = {"stop_train", "converged", "message"}
CSV_HEADER = (
    "job_id,trial_number,batch_size,type,status,start_timestamp_ms,"
    "end_timestamp_ms,time,energy,converged"
)


def is_json(r) -> bool:
    return r.headers.get("content-type", "").startswith("application/json")


def test_healthz_needs_no_token(api):
    r = api.get("/healthz", auth=False)
    assert r.status_code == 200
    assert is_json(r)
    # The store is asked too: a store that cannot take writes answers 503.
    assert r.json() == {"status": "ok", "writable": True}


def test_openapi_document_lists_every_route(api):
    r = api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/jobs", "post"),
        ("/jobs", "delete"),
        ("/jobs/batch_size", "get"),
        ("/report", "post"),
        ("/trials", "patch"),
        ("/healthz", "get"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}/trials", "get"),
        ("/jobs/{job_id}/profiles", "get"),
        ("/jobs/{job_id}/profiles", "post"),
    ]:
        assert path in paths, f"{path} missing from the OpenAPI document"
        assert method in paths[path], f"{method.upper()} {path} missing"
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ["JobSpec", "TrialId", "TrainingResult", "ReportResponse", "PowerProfile"]:
        assert name in schemas, f"schema {name} missing"


def test_register_created_then_identical_then_conflict(api):
    spec = job_spec(eta_knob=0.5)
    r = api.post("/jobs", spec)
    assert r.status_code == 201, r.text
    assert is_json(r)
    body = r.json()
    assert body["job_id"] == spec["job_id"]
    # Zeus's defaults are filled in, batch sizes sorted.
    assert body["batch_sizes"] == [8, 16, 32, 64, 128]
    assert body["beta_knob"] == 2.0
    assert body["target_metric"] == 0.5
    assert body["higher_is_better_metric"] is True
    assert body["num_pruning_rounds"] == 2
    assert body["mab_num_explorations"] == 2
    assert body["window_size"] == 0
    assert body["max_power"] == 300.0
    assert body["gpu_model"] == "V100"
    again = api.post("/jobs", spec)
    assert again.status_code == 200, again.text
    assert again.json() == body
    before = api.state(spec["job_id"])
    other = dict(spec, eta_knob=0.3)
    r = api.post("/jobs", other)
    assert r.status_code == 409, r.text
    assert "message" in r.json()
    assert api.state(spec["job_id"]) == before


def test_register_without_job_id_generates_one_with_the_prefix(api):
    spec = job_spec("genid")
    del spec["job_id"]
    r = api.post("/jobs", spec)
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert job_id.startswith("genid")
    assert api.state(job_id)["job_id"] == job_id


def test_predict_report_end_state_and_delete(api):
    spec = api.register(job_spec())
    job_id = spec["job_id"]
    r = api.get("/jobs/batch_size", params={"job_id": job_id})
    assert r.status_code == 200 and is_json(r)
    trial = r.json()
    assert set(trial) == TRIAL_ID_KEYS
    assert trial == {"job_id": job_id, "batch_size": 32, "trial_number": 1}

    keep = api.report(trial, 10.0, 1000.0, 0.1, 1)
    assert set(keep) == REPORT_KEYS
    assert keep["stop_train"] is False and keep["converged"] is False
    done = api.report(trial, 20.0, 2000.0, 0.9, 2)
    assert done == {"stop_train": True, "converged": True, "message": done["message"]}
    assert done["message"]

    state = api.state(job_id)
    assert state["job_id"] == job_id
    assert state["stage"] == "Pruning"
    assert state["min_cost_batch_size"] == 32
    assert state["min_cost"] == pytest.approx(0.5 * 2000.0 + 0.5 * 300.0 * 20.0)

    second = api.predict(job_id)
    r = api.request("PATCH", "/trials", second)
    assert r.status_code == 200, r.text
    assert r.json() is None
    # Ending it again is fine and changes nothing.
    before = api.state(job_id)
    assert api.request("PATCH", "/trials", second).status_code == 200
    assert api.state(job_id) == before

    r = api.request("DELETE", "/jobs", params={"job_id": job_id})
    assert r.status_code == 200, r.text
    assert r.json() is None
    assert api.get(f"/jobs/{job_id}").status_code == 404
    assert api.get(f"/jobs/{job_id}/trials").status_code == 404


def test_trials_export_json_and_csv(api):
    spec = api.register(job_spec())
    job_id = spec["job_id"]
    t1 = api.predict(job_id)
    api.report(t1, 10.0, 1000.0, 0.9, 1)
    t2 = api.predict(job_id)
    assert api.request("PATCH", "/trials", t2).status_code == 200
    t3 = api.predict(job_id)

    r = api.get(f"/jobs/{job_id}/trials")
    assert r.status_code == 200 and is_json(r)
    rows = r.json()
    assert [t["trial_number"] for t in rows] == [1, 2, 3]
    assert [t["status"] for t in rows] == ["Succeeded", "Failed", "Dispatched"]
    assert all(t["job_id"] == job_id for t in rows)
    assert rows[0]["time"] == 10.0 and rows[0]["energy"] == 1000.0 and rows[0]["converged"] is True
    assert rows[2]["batch_size"] == t3["batch_size"]
    assert api.get(f"/jobs/{job_id}/trials", params={"format": "json"}).json() == rows

    r = api.get(f"/jobs/{job_id}/trials", params={"format": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == CSV_HEADER
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["trial_number"] for row in table] == ["1", "2", "3"]
    assert table[0]["status"] == "Succeeded" and table[0]["converged"] == "true"
    assert table[1]["status"] == "Failed" and table[1]["time"] == ""
    assert table[2]["end_timestamp_ms"] == ""


def test_a_reports_energy_bound_is_kept_with_its_trial(api):
    job_id = api.register(job_spec(max_epochs=2))["job_id"]
    t = api.predict(job_id)

    def report(epoch, **extra):
        body = {"job_id": job_id, "batch_size": t["batch_size"], "trial_number": t["trial_number"],
                "time": 10.0 * epoch, "energy": 100.0 * epoch, "metric": 0.1, "current_epoch": epoch}
        return api.post("/report", dict(body, **extra))

    r = report(1, energy_uncertainty_j=0.25)
    assert r.status_code == 200 and set(r.json()) == REPORT_KEYS and not r.json()["stop_train"], r.text
    # A bad bound at the last epoch (which would record the trial) is refused by name.
    before = api.state(job_id)
    for bad in (-0.5, "NaN", [0.5], 1e300):
        r = report(2, energy_uncertainty_j=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["message"].startswith("energy_uncertainty_j:"), (bad, r.text)
    assert api.state(job_id) == before
    r = report(2, energy_uncertainty_j=1.5)
    assert r.status_code == 200 and set(r.json()) == REPORT_KEYS and r.json()["stop_train"], r.text
    (row,) = api.get(f"/jobs/{job_id}/trials").json()
    assert (row["status"], row["energy"], row["energy_uncertainty_j"]) == ("Succeeded", 200.0, 1.5), row
    assert api.state(job_id)["recent_trials"][0]["energy_uncertainty_j"] == 1.5
    # The CSV export keeps the seed's Trial table.
    r = api.get(f"/jobs/{job_id}/trials", params={"format": "csv"})
    assert r.text.strip().splitlines()[0] == CSV_HEADER
    # A report without the field (Zeus's client): the trial has no bound.
    other = api.register(job_spec(max_epochs=1))["job_id"]
    t2 = api.predict(other)
    assert api.report(t2, 10.0, 100.0, 0.1, 1)["stop_train"]
    (row,) = api.get(f"/jobs/{other}/trials").json()
    assert row["status"] == "Succeeded" and "energy_uncertainty_j" not in row, row


def test_profiles_post_replace_and_get(api):
    spec = api.register(job_spec())
    job_id = spec["job_id"]
    assert api.get(f"/jobs/{job_id}/profiles").json() == []
    profile = {
        "batch_size": 32,
        "phase": "train",
        "gpu_model": "V100",
        "measurements": [
            {"power_limit": 300, "average_power": 131.9, "throughput": 31.0},
            {"power_limit": 275, "average_power": 123.6, "throughput": 29.9},
        ],
    }
    r = api.post(f"/jobs/{job_id}/profiles", profile)
    assert r.status_code == 201, r.text
    assert r.json() == profile
    evalp = dict(profile, phase="eval", measurements=[profile["measurements"][0]])
    assert api.post(f"/jobs/{job_id}/profiles", evalp).status_code == 201
    # Same GPU, batch size and phase: replaced, not added.
    newer = dict(profile, measurements=[{"power_limit": 250, "average_power": 110.0, "throughput": 28.0}])
    assert api.post(f"/jobs/{job_id}/profiles", newer).status_code == 201
    got = api.get(f"/jobs/{job_id}/profiles")
    assert got.status_code == 200
    assert sorted(got.json(), key=lambda p: p["phase"]) == [evalp, newer]
    assert api.state(job_id)["profiles"] == got.json()


def test_profile_bounds_and_uncertain_note_are_stored_and_read_back(api):
    job_id = api.register(job_spec())["job_id"]
    profile = {
        "batch_size": 32,
        "phase": "train",
        "gpu_model": "V100",
        "measurements": [
            {"power_limit": 300, "average_power": 131.9, "throughput": 31.0, "energy_uncertainty_j": 0.4},
            {"power_limit": 275, "average_power": 123.6, "throughput": 29.9, "energy_uncertainty_j": 0.35},
            # A limit measured without a bound keeps none.
            {"power_limit": 250, "average_power": 110.0, "throughput": 28.0},
        ],
        "uncertain": [275, 300],
    }
    r = api.post(f"/jobs/{job_id}/profiles", profile)
    assert r.status_code == 201, r.text
    assert r.json() == profile
    assert api.get(f"/jobs/{job_id}/profiles").json() == [profile]
    assert api.state(job_id)["profiles"] == [profile]
    # A bad bound is refused by name and changes nothing.
    bad = dict(profile, measurements=[dict(profile["measurements"][0], energy_uncertainty_j=-1.0)] + profile["measurements"][1:])
    r = api.post(f"/jobs/{job_id}/profiles", bad)
    assert r.status_code == 422, r.text
    assert "measurements.energy_uncertainty_j" in r.json()["message"]
    assert api.get(f"/jobs/{job_id}/profiles").json() == [profile]


def test_unknown_route_and_wrong_method(api):
    r = api.get("/no/such/route")
    assert r.status_code == 404
    assert "message" in r.json()
    r = api.request("PUT", "/jobs", {})
    assert r.status_code == 405
    assert "PUT" in r.json()["message"]


def test_unknown_job_is_404_everywhere(api):
    ghost = unique("ghost")
    for method, path, params in [
        ("GET", f"/jobs/{ghost}", None),
        ("GET", f"/jobs/{ghost}/trials", None),
        ("GET", f"/jobs/{ghost}/profiles", None),
        ("GET", "/jobs/batch_size", {"job_id": ghost}),
        ("DELETE", "/jobs", {"job_id": ghost}),
    ]:
        r = api.request(method, path, params=params)
        assert r.status_code == 404, (method, path, r.text)
        assert "job_id" in r.json()["message"]
