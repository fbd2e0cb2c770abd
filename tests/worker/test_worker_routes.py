"""Worker-specific routing checks, run against the local Worker in both store modes.

In the Durable Object mode the Worker reads the job id of each request to send it
to that job's object, and answers the rest itself. These check that both ways meet
the same job: a registration with a generated id (answered by the Worker), then
calls for that job (forwarded); a job id percent-encoded in the query reaching the
job named plainly in the path; and methods the service refuses.

Settings: WATTWISE_TEST_URL (required), WATTWISE_TEST_TOKEN.
"""

from __future__ import annotations

import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
from retrying import Session  # noqa: E402  (the conformance suite's client session)

BASE_URL = os.environ.get("WATTWISE_TEST_URL", "").rstrip("/")
TOKEN = os.environ.get("WATTWISE_TEST_TOKEN") or None
HTTP = Session()
H = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


def spec(**overrides) -> dict:
    s = {
        "job_id_prefix": "route",
        "batch_sizes": [16, 32],
        "default_batch_size": 32,
        "max_epochs": 10,
        "max_power": 250.0,
        "number_of_gpus": 1,
        "gpu_model": "V100",
    }
    s.update(overrides)
    return s


def test_generated_job_id_is_the_same_job_everywhere():
    assert BASE_URL, "WATTWISE_TEST_URL is not set"
    prefix = f"gen{uuid.uuid4().hex[:8]}"
    r = HTTP.post(f"{BASE_URL}/jobs", json=spec(job_id_prefix=prefix), headers=H, timeout=60)
    assert r.status_code == 201, r.text
    job_id = r.json()["job_id"]
    assert job_id.startswith(prefix), job_id

    r = HTTP.get(f"{BASE_URL}/jobs/batch_size", params={"job_id": job_id}, headers=H, timeout=60)
    assert r.status_code == 200, r.text
    trial = r.json()
    assert trial["trial_number"] == 1
    body = dict(trial, time=12.5, energy=3400.0, metric=0.9, current_epoch=1)
    r = HTTP.post(f"{BASE_URL}/report", json=body, headers=H, timeout=60)
    assert r.status_code == 200 and r.json()["stop_train"], r.text

    r = HTTP.get(f"{BASE_URL}/jobs/{job_id}/trials", headers=H, timeout=60)
    assert r.status_code == 200, r.text
    [rec] = r.json()
    assert (rec["status"], rec["time"], rec["energy"]) == ("Succeeded", 12.5, 3400.0)


def test_percent_encoded_query_id_meets_the_plain_path_id():
    job_id = f"route-pe-{uuid.uuid4().hex[:8]}.x"
    r = HTTP.post(f"{BASE_URL}/jobs", json=spec(job_id=job_id), headers=H, timeout=60)
    assert r.status_code == 201, r.text
    encoded = job_id.replace("-", "%2D").replace(".", "%2E")
    r = HTTP.get(f"{BASE_URL}/jobs/batch_size?job_id={encoded}", headers=H, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["job_id"] == job_id
    r = HTTP.get(f"{BASE_URL}/jobs/{job_id}", headers=H, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["next_trial_number"] == 2
    r = HTTP.delete(f"{BASE_URL}/jobs?job_id={encoded}", headers=H, timeout=60)
    assert r.status_code == 200, r.text
    assert HTTP.get(f"{BASE_URL}/jobs/{job_id}", headers=H, timeout=60).status_code == 404


def test_refused_methods_on_job_routes():
    job_id = f"route-m-{uuid.uuid4().hex[:8]}"
    assert HTTP.post(f"{BASE_URL}/jobs", json=spec(job_id=job_id), headers=H, timeout=60).status_code == 201
    for method, path in [("PUT", f"/jobs/{job_id}"), ("DELETE", f"/jobs/{job_id}"),
                         ("POST", f"/jobs/batch_size?job_id={job_id}"), ("PATCH", "/report")]:
        r = HTTP.request(method, BASE_URL + path, headers=H, json={"job_id": job_id}, timeout=60)
        assert r.status_code == 405, (method, path, r.status_code, r.text)
    assert HTTP.get(f"{BASE_URL}/jobs/{job_id}", headers=H, timeout=60).status_code == 200
