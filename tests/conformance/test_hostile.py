"""Malformed and hostile requests: each gets the right 4xx, a JSON {"message"}
naming the field (or what was wrong), and leaves the job's state unchanged."""

from __future__ import annotations

import json

import pytest

from conftest import DROP, TOKEN, changed, job_spec, unique

OVERSIZED = b'{"pad": "' + b"x" * (70 * 1024) + b'"}'


@pytest.fixture(scope="module")
def job(api):
    """A registered job with one dispatched trial, shared by every case (none may change it)."""
    spec = api.register(job_spec("hostile"))
    trial = api.predict(spec["job_id"])
    return {"spec": spec, "trial": trial, "id": spec["job_id"]}


def spec_with(job, **changes):
    """A spec for a new job id (so a wrongly accepted one would be visible), with changes."""
    return changed(job["spec"], {"job_id": unique("hostile"), **changes})


def result_with(job, **changes):
    t = job["trial"]
    body = {"job_id": t["job_id"], "batch_size": t["batch_size"], "trial_number": t["trial_number"],
            "time": 1.0, "energy": 10.0, "metric": 0.1, "current_epoch": 1}
    return changed(body, changes)


def profile_with(**changes):
    p = {"batch_size": 32, "phase": "train", "gpu_model": "V100",
         "measurements": [{"power_limit": 300, "average_power": 100.0, "throughput": 10.0}]}
    m = dict(p["measurements"][0])
    for k, v in changes.items():
        if k.startswith("m_"):
            m[k[2:]] = v
        elif v is DROP:
            p.pop(k, None)
        else:
            p[k] = v
    p["measurements"] = changes.get("measurements", [m])
    return p


# (id, method, path (may use {job}), body builder (job -> body | bytes | None), query, status, word in message)
CASES = [
    # --- POST /jobs ---
    ("jobs-not-json", "POST", "/jobs", lambda j: b"{not json", None, 422, "body"),
    ("jobs-empty-body", "POST", "/jobs", lambda j: b"", None, 422, "body"),
    ("jobs-array", "POST", "/jobs", lambda j: [1, 2], None, 422, "body"),
    ("jobs-string", "POST", "/jobs", lambda j: "job", None, 422, "body"),
    ("jobs-trailing-garbage", "POST", "/jobs", lambda j: json.dumps(spec_with(j)).encode() + b" }", None, 422, "body"),
    ("jobs-missing-prefix", "POST", "/jobs", lambda j: spec_with(j, job_id_prefix=DROP), None, 422, "job_id_prefix"),
    ("jobs-missing-batch-sizes", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=DROP), None, 422, "batch_sizes"),
    ("jobs-missing-max-power", "POST", "/jobs", lambda j: spec_with(j, max_power=DROP), None, 422, "max_power"),
    ("jobs-missing-gpu-model", "POST", "/jobs", lambda j: spec_with(j, gpu_model=DROP), None, 422, "gpu_model"),
    ("jobs-batch-sizes-string", "POST", "/jobs", lambda j: spec_with(j, batch_sizes="abc"), None, 422, "batch_sizes"),
    ("jobs-batch-sizes-empty", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=[]), None, 422, "batch_sizes"),
    ("jobs-batch-size-negative", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=[-8, 32]), None, 422, "batch_sizes"),
    ("jobs-batch-size-zero", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=[0, 32]), None, 422, "batch_sizes"),
    ("jobs-batch-size-huge", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=[2**40, 32]), None, 422, "batch_sizes"),
    ("jobs-batch-size-float", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=[8.5, 32]), None, 422, "batch_sizes"),
    ("jobs-batch-sizes-too-many", "POST", "/jobs", lambda j: spec_with(j, batch_sizes=list(range(1, 400)), default_batch_size=1), None, 422, "batch_sizes"),
    ("jobs-default-not-listed", "POST", "/jobs", lambda j: spec_with(j, default_batch_size=48), None, 422, "default_batch_size"),
    ("jobs-default-negative", "POST", "/jobs", lambda j: spec_with(j, default_batch_size=-32), None, 422, "default_batch_size"),
    ("jobs-eta-above-one", "POST", "/jobs", lambda j: spec_with(j, eta_knob=1.5), None, 422, "eta_knob"),
    ("jobs-eta-negative", "POST", "/jobs", lambda j: spec_with(j, eta_knob=-0.1), None, 422, "eta_knob"),
    ("jobs-eta-nan", "POST", "/jobs", lambda j: json.dumps(spec_with(j, eta_knob=float("nan"))).encode(), None, 422, "body"),
    ("jobs-max-power-huge", "POST", "/jobs", lambda j: json.dumps(spec_with(j)).replace('"max_power": 300.0', '"max_power": 1e400').encode(), None, 422, "max_power|number out of range"),
    ("jobs-max-power-1e308", "POST", "/jobs", lambda j: spec_with(j, max_power=1e308), None, 422, "max_power"),
    ("jobs-beta-huge", "POST", "/jobs", lambda j: spec_with(j, beta_knob=1e300), None, 422, "beta_knob"),
    ("jobs-prior-mean-huge", "POST", "/jobs", lambda j: spec_with(j, mab_prior_mean=-1e300), None, 422, "mab_prior_mean"),
    ("jobs-prior-precision-huge", "POST", "/jobs", lambda j: spec_with(j, mab_prior_precision=1e300), None, 422, "mab_prior_precision"),
    ("jobs-eta-string", "POST", "/jobs", lambda j: spec_with(j, eta_knob="0.5"), None, 422, "eta_knob"),
    ("jobs-beta-zero", "POST", "/jobs", lambda j: spec_with(j, beta_knob=0), None, 422, "beta_knob"),
    ("jobs-beta-negative", "POST", "/jobs", lambda j: spec_with(j, beta_knob=-1.0), None, 422, "beta_knob"),
    ("jobs-max-epochs-zero", "POST", "/jobs", lambda j: spec_with(j, max_epochs=0), None, 422, "max_epochs"),
    ("jobs-max-epochs-negative", "POST", "/jobs", lambda j: spec_with(j, max_epochs=-5), None, 422, "max_epochs"),
    ("jobs-pruning-rounds-negative", "POST", "/jobs", lambda j: spec_with(j, num_pruning_rounds=-1), None, 422, "num_pruning_rounds"),
    ("jobs-window-huge", "POST", "/jobs", lambda j: spec_with(j, window_size=10**12), None, 422, "window_size"),
    ("jobs-seed-negative", "POST", "/jobs", lambda j: spec_with(j, mab_seed=-1), None, 422, "mab_seed"),
    ("jobs-prior-precision-negative", "POST", "/jobs", lambda j: spec_with(j, mab_prior_precision=-1.0), None, 422, "mab_prior_precision"),
    ("jobs-max-power-zero", "POST", "/jobs", lambda j: spec_with(j, max_power=0), None, 422, "max_power"),
    ("jobs-max-power-negative", "POST", "/jobs", lambda j: spec_with(j, max_power=-300.0), None, 422, "max_power"),
    ("jobs-gpus-zero", "POST", "/jobs", lambda j: spec_with(j, number_of_gpus=0), None, 422, "number_of_gpus"),
    ("jobs-gpu-model-empty", "POST", "/jobs", lambda j: spec_with(j, gpu_model=""), None, 422, "gpu_model"),
    ("jobs-gpu-model-long", "POST", "/jobs", lambda j: spec_with(j, gpu_model="G" * 500), None, 422, "gpu_model"),
    ("jobs-id-wrong-prefix", "POST", "/jobs", lambda j: spec_with(j, job_id="other-1"), None, 422, "job_id"),
    ("jobs-id-too-long", "POST", "/jobs", lambda j: spec_with(j, job_id="hostile-" + "x" * 300), None, 422, "job_id"),
    ("jobs-bool-string", "POST", "/jobs", lambda j: spec_with(j, higher_is_better_metric="yes"), None, 422, "higher_is_better_metric"),
    ("jobs-oversized", "POST", "/jobs", lambda j: OVERSIZED, None, 413, "body"),
    ("jobs-reregister-mismatch", "POST", "/jobs", lambda j: dict(j["spec"], eta_knob=0.9), None, 409, "configuration"),
    # --- GET /jobs/batch_size ---
    ("predict-no-job-id", "GET", "/jobs/batch_size", None, "", 422, "job_id"),
    ("predict-empty-job-id", "GET", "/jobs/batch_size", None, "job_id=", 422, "job_id"),
    ("predict-unknown-job", "GET", "/jobs/batch_size", None, "job_id=ghost-123", 404, "job_id"),
    ("predict-bad-percent", "GET", "/jobs/batch_size", None, "job_id=%zz", 400, "query"),
    ("predict-post", "POST", "/jobs/batch_size", lambda j: {}, "job_id={job}", 405, "method"),
    # --- POST /report ---
    ("report-missing-time", "POST", "/report", lambda j: result_with(j, time=DROP), None, 422, "time"),
    ("report-time-negative", "POST", "/report", lambda j: result_with(j, time=-1.0), None, 422, "time"),
    ("report-energy-negative", "POST", "/report", lambda j: result_with(j, energy=-5.0), None, 422, "energy"),
    ("report-time-nan", "POST", "/report", lambda j: json.dumps(result_with(j, time=float("nan"))).encode(), None, 422, "body"),
    ("report-time-infinity", "POST", "/report", lambda j: json.dumps(result_with(j, time=float("inf"))).encode(), None, 422, "body"),
    ("report-energy-huge", "POST", "/report", lambda j: json.dumps(result_with(j)).replace('"energy": 10.0', '"energy": 1e999').encode(), None, 422, "energy|number out of range"),
    ("report-time-huge-finite", "POST", "/report", lambda j: result_with(j, time=1e300), None, 422, "time"),
    ("report-energy-huge-finite", "POST", "/report", lambda j: result_with(j, energy=1e300), None, 422, "energy"),
    ("report-metric-string", "POST", "/report", lambda j: result_with(j, metric="high"), None, 422, "metric"),
    # At the job's last epoch, so a bound wrongly taken would record the trial.
    ("report-energy-uncertainty-negative", "POST", "/report", lambda j: result_with(j, current_epoch=10, energy_uncertainty_j=-0.5), None, 422, "energy_uncertainty_j"),
    ("report-energy-uncertainty-nan-string", "POST", "/report", lambda j: result_with(j, current_epoch=10, energy_uncertainty_j="NaN"), None, 422, "energy_uncertainty_j"),
    ("report-energy-uncertainty-nan", "POST", "/report", lambda j: json.dumps(result_with(j, current_epoch=10, energy_uncertainty_j=float("nan"))).encode(), None, 422, "body"),
    ("report-energy-uncertainty-list", "POST", "/report", lambda j: result_with(j, current_epoch=10, energy_uncertainty_j=[0.5]), None, 422, "energy_uncertainty_j"),
    ("report-energy-uncertainty-huge", "POST", "/report", lambda j: result_with(j, current_epoch=10, energy_uncertainty_j=1e300), None, 422, "energy_uncertainty_j"),
    ("report-batch-size-mismatch", "POST", "/report", lambda j: result_with(j, batch_size=j["trial"]["batch_size"] * 2), None, 400, "batch_size"),
    ("report-unknown-trial", "POST", "/report", lambda j: result_with(j, trial_number=9999), None, 404, "trial_number"),
    ("report-unknown-job", "POST", "/report", lambda j: result_with(j, job_id="ghost-1"), None, 404, "job_id"),
    ("report-trial-negative", "POST", "/report", lambda j: result_with(j, trial_number=-1), None, 422, "trial_number"),
    ("report-batch-size-negative", "POST", "/report", lambda j: result_with(j, batch_size=-32), None, 422, "batch_size"),
    ("report-epoch-negative", "POST", "/report", lambda j: result_with(j, current_epoch=-1), None, 422, "current_epoch"),
    ("report-epoch-huge", "POST", "/report", lambda j: result_with(j, current_epoch=2**40), None, 422, "current_epoch"),
    ("report-empty-body", "POST", "/report", lambda j: b"", None, 422, "body"),
    ("report-null-job-id", "POST", "/report", lambda j: result_with(j, job_id=None), None, 422, "job_id"),
    ("report-oversized", "POST", "/report", lambda j: OVERSIZED, None, 413, "body"),
    ("report-get", "GET", "/report", None, None, 405, "method"),
    # --- PATCH /trials ---
    ("end-unknown-trial", "PATCH", "/trials", lambda j: dict(j["trial"], trial_number=424242), None, 404, "trial_number"),
    ("end-missing-trial-number", "PATCH", "/trials", lambda j: {"job_id": j["id"], "batch_size": 32}, None, 422, "trial_number"),
    ("end-unknown-job", "PATCH", "/trials", lambda j: dict(j["trial"], job_id="ghost-2"), None, 404, "job_id"),
    ("end-trial-number-string", "PATCH", "/trials", lambda j: dict(j["trial"], trial_number="one"), None, 422, "trial_number"),
    ("end-bad-json", "PATCH", "/trials", lambda j: b'{"job_id": ', None, 422, "body"),
    # --- DELETE /jobs ---
    ("delete-no-job-id", "DELETE", "/jobs", None, "", 422, "job_id"),
    ("delete-unknown-job", "DELETE", "/jobs", None, "job_id=ghost-3", 404, "job_id"),
    # --- profiles ---
    ("profile-batch-size-unknown", "POST", "/jobs/{job}/profiles", lambda j: profile_with(batch_size=48), None, 422, "batch_size"),
    ("profile-phase-bad", "POST", "/jobs/{job}/profiles", lambda j: profile_with(phase="test"), None, 422, "phase"),
    ("profile-measurements-empty", "POST", "/jobs/{job}/profiles", lambda j: profile_with(measurements=[]), None, 422, "measurements"),
    ("profile-power-limit-zero", "POST", "/jobs/{job}/profiles", lambda j: profile_with(m_power_limit=0), None, 422, "power_limit"),
    ("profile-average-power-negative", "POST", "/jobs/{job}/profiles", lambda j: profile_with(m_average_power=-1.0), None, 422, "average_power"),
    ("profile-throughput-nan", "POST", "/jobs/{job}/profiles", lambda j: json.dumps(profile_with(m_throughput=float("nan"))).encode(), None, 422, "body"),
    ("profile-energy-uncertainty-negative", "POST", "/jobs/{job}/profiles", lambda j: profile_with(m_energy_uncertainty_j=-0.5), None, 422, "measurements.energy_uncertainty_j"),
    ("profile-energy-uncertainty-string", "POST", "/jobs/{job}/profiles", lambda j: profile_with(m_energy_uncertainty_j="wide"), None, 422, "energy_uncertainty_j"),
    ("profile-uncertain-one-limit", "POST", "/jobs/{job}/profiles", lambda j: profile_with(uncertain=[300]), None, 422, "uncertain"),
    ("profile-uncertain-unmeasured", "POST", "/jobs/{job}/profiles", lambda j: profile_with(uncertain=[300, 250]), None, 422, "uncertain"),
    ("profile-gpu-model-empty", "POST", "/jobs/{job}/profiles", lambda j: profile_with(gpu_model=""), None, 422, "gpu_model"),
    ("profile-unknown-job", "POST", "/jobs/ghost-4/profiles", lambda j: profile_with(), None, 404, "job_id"),
    ("profile-put", "PUT", "/jobs/{job}/profiles", lambda j: profile_with(), None, 405, "method"),
    # --- trials export, routes ---
    ("trials-format-xml", "GET", "/jobs/{job}/trials", None, "format=xml", 422, "format"),
    ("trials-unknown-job", "GET", "/jobs/ghost-5/trials", None, None, 404, "job_id"),
    ("state-post", "POST", "/jobs/{job}", lambda j: {}, None, 405, "method"),
    ("route-unknown", "GET", "/jobs/{job}/nothing", None, None, 404, "route"),
    ("route-put-jobs", "PUT", "/jobs", lambda j: {}, None, 405, "method"),
    ("route-delete-report", "DELETE", "/report", None, None, 405, "method"),
]


@pytest.mark.parametrize(
    "method,path,build,query,status,word",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_hostile_request(api, job, method, path, build, query, status, word):
    before = api.state(job["id"])
    path = path.replace("{job}", job["id"])
    body = build(job) if build else None
    raw = None
    if isinstance(body, bytes):
        raw, body = body, None
    if query:
        path = f"{path}?{query.replace('{job}', job['id'])}"
    r = api.request(method, path, body, raw=raw, exact_url=True)
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers.get("content-type", "").startswith("application/json")
    msg = r.json()
    assert set(msg) == {"message"}, msg
    # `word` may list alternatives: "field|what serde calls the error".
    assert any(w.lower() in msg["message"].lower() for w in word.split("|")), msg["message"]
    assert api.state(job["id"]) == before
    if method == "POST" and path == "/jobs" and isinstance(body, dict) and status != 409:
        # A refused registration created nothing.
        assert api.get(f"/jobs/{body.get('job_id', 'none')}").status_code == 404


def test_there_are_at_least_fifty_cases():
    assert len(CASES) >= 50


AUTH_CASES = [
    ("no-header", None),
    ("wrong-token", "Bearer not-the-token"),
    ("basic-scheme", "Basic dXNlcjpwYXNz"),
    ("no-scheme", TOKEN or "x"),
    ("token-prefix", f"Bearer {(TOKEN or 'x')[:-1]}"),
    ("token-extended", f"Bearer {TOKEN}x"),
]


@pytest.mark.skipif(not TOKEN, reason="the host runs without WATTWISE_TOKEN")
@pytest.mark.parametrize("header", [c[1] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/jobs/batch_size?job_id={job}", None),
        ("POST", "/report", "result"),
        ("GET", "/jobs/{job}", None),
        ("DELETE", "/jobs?job_id={job}", None),
        ("GET", "/openapi.json", None),
    ],
)
def test_bad_auth_is_401_and_changes_nothing(api, job, header, method, path, body):
    before = api.state(job["id"])
    headers = {"Authorization": header} if header is not None else {}
    data = result_with(job) if body == "result" else None
    r = api.request(method, path.replace("{job}", job["id"]), data, headers=headers, auth=False)
    assert r.status_code == 401, r.text
    assert "token" in r.json()["message"]
    assert TOKEN not in r.text
    assert api.state(job["id"]) == before


@pytest.mark.skipif(not TOKEN, reason="the host runs without WATTWISE_TOKEN")
@pytest.mark.parametrize("header", [f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}", f"Bearer\t{TOKEN}"],
                         ids=["lowercase", "uppercase", "two-spaces", "tab"])
def test_the_bearer_scheme_is_case_insensitive_and_may_take_more_spaces(api, job, header):
    r = api.request("GET", f"/jobs/{job['id']}", headers={"Authorization": header}, auth=False)
    assert r.status_code == 200, r.text
