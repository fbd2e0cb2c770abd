"""Shared fixtures of the wattwise endpoint conformance suite.

The suite talks HTTP to a running host only. Settings, from the environment:

- WATTWISE_TEST_URL: the host's base URL (e.g. http://127.0.0.1:8080 or
  http://127.0.0.1:9000/lambda-url/bootstrap), required.
- WATTWISE_TEST_TOKEN: the bearer token the host was started with, if any. When it
  is set the auth tests run too.
- WATTWISE_TEST_CONCURRENCY_REQUESTS: requests per client in the concurrency test
  (default 500; 32 clients).
- WATTWISE_TEST_ZEUS: "1" to run the Zeus-client test (needs zeus==0.16.0 importable).
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
import requests

from retrying import Session

BASE_URL = os.environ.get("WATTWISE_TEST_URL", "").rstrip("/")
TOKEN = os.environ.get("WATTWISE_TEST_TOKEN") or None


class Api:
    """A small HTTP client for the endpoint: base URL, token, JSON helpers."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.token = token
        self.session = Session()

    def headers(self, extra: dict | None = None, auth: bool = True) -> dict:
        h = {}
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if extra:
            h.update(extra)
        return h

    def request(
        self,
        method: str,
        path: str,
        body=None,
        *,
        raw: bytes | str | None = None,
        headers: dict | None = None,
        auth: bool = True,
        params: dict | None = None,
        exact_url: bool = False,
    ) -> requests.Response:
        """Sends a request. `body` is sent as JSON; `raw` as is. With `exact_url`
        the path and query go out byte for byte (requests would re-quote a bad
        percent-escape)."""
        data = raw
        if body is not None:
            data = json.dumps(body)
        h = self.headers(headers, auth)
        if data is not None and "Content-Type" not in h:
            h["Content-Type"] = "application/json"
        if not exact_url:
            return self.session.request(
                method, self.base + path, data=data, headers=h, params=params, timeout=60
            )
        return raw_request(method, self.base + path, data, h)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        return self.request("POST", path, body, **kw)

    def state(self, job_id: str) -> dict:
        r = self.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def register(self, spec: dict) -> dict:
        r = self.post("/jobs", spec)
        assert r.status_code == 201, r.text
        return r.json()

    def predict(self, job_id: str) -> dict:
        r = self.get("/jobs/batch_size", params={"job_id": job_id})
        assert r.status_code == 200, r.text
        return r.json()

    def report(self, trial: dict, time: float, energy: float, metric: float, epoch: int) -> dict:
        r = self.post(
            "/report",
            {
                "job_id": trial["job_id"],
                "batch_size": trial["batch_size"],
                "trial_number": trial["trial_number"],
                "time": time,
                "energy": energy,
                "metric": metric,
                "current_epoch": epoch,
            },
        )
        assert r.status_code == 200, r.text
        return r.json()


def raw_request(method: str, url: str, data, headers: dict) -> requests.Response:
    """Sends a request with http.client, the URL byte for byte, and wraps the answer
    as a `requests.Response`."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
    target = u.path + (f"?{u.query}" if u.query else "")
    body = data.encode() if isinstance(data, str) else data
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    out = requests.Response()
    out.status_code = resp.status
    out._content = resp.read()
    out.headers = requests.structures.CaseInsensitiveDict(resp.getheaders())
    out.url = url
    conn.close()
    return out


def unique(prefix: str) -> str:
    """A job id that no earlier run of the suite used: `prefix-<hex>`."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def job_spec(prefix: str = "conf", **overrides) -> dict:
    """A valid job spec with a fresh job id."""
    spec = {
        "job_id": unique(prefix),
        "job_id_prefix": prefix,
        "batch_sizes": [8, 16, 32, 64, 128],
        "default_batch_size": 32,
        "max_epochs": 10,
        "mab_seed": 7,
        "max_power": 300.0,
        "number_of_gpus": 1,
        "gpu_model": "V100",
    }
    spec.update(overrides)
    return spec


class Drop:
    """A value for `changed` that removes the field."""

    def __repr__(self):
        return "DROP"


DROP = Drop()


def changed(body: dict, changes: dict) -> dict:
    """A copy of `body` with `changes` applied (a value of `DROP` removes the field)."""
    out = dict(body)
    for k, v in changes.items():
        if v is DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# Per-epoch (time s, energy J) per batch size of the scenario jobs: the cost is lowest at 16.
PER_EPOCH = {8: (30.0, 6000.0), 16: (10.0, 2000.0), 32: (12.0, 2500.0), 64: (14.0, 3000.0), 128: (20.0, 5000.0)}


def report(api, trial, epoch, metric):
    """Reports `epoch` epochs of `trial` at its batch size's cost in `PER_EPOCH`."""
    t, e = PER_EPOCH[trial["batch_size"]]
    return api.report(trial, t * epoch, e * epoch, metric, epoch)


def train(api, trial, epochs):
    """Reports each epoch (metric 0.1, then 0.9 at `epochs`) until told to stop."""
    for epoch in range(1, epochs):
        r = report(api, trial, epoch, 0.1)
        if r["stop_train"]:
            return r
    return report(api, trial, epochs, 0.9)


def expect_run(api, job, batch_size, converged=True, epochs=5):
    """Asks for a trial of `job`, checks it is `batch_size`, trains it for `epochs`
    epochs and checks that the run stopped, converged or not; returns the last answer."""
    t = api.predict(job)
    assert t["batch_size"] == batch_size, (t, batch_size)
    r = train(api, t, epochs)
    assert (r["stop_train"], r["converged"]) == (True, converged), r
    return r


@pytest.fixture(scope="session")
def api() -> Api:
    if not BASE_URL:
        pytest.fail("WATTWISE_TEST_URL is not set: the base URL of the host under test")
    a = Api(BASE_URL, TOKEN)
    r = a.get("/healthz", auth=False)
    assert r.status_code == 200, f"host at {BASE_URL} is not healthy: {r.status_code} {r.text}"
    return a
