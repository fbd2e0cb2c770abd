"""Zeus's own Python client (zeus==0.16.0) against the endpoint, unchanged.

Each training run is its own process (zeus_train.py), as with a real job: the
client registers, gets a batch size, reports every epoch and, at exit, ends the
trial. Runs: convergence, an early stop above beta x min_cost, a run stopped at
max_epochs, a crashed run (ended by the client's at-exit call), and a converging
run after it. Zeus's client sends no token, so this runs only against a host
without WATTWISE_TOKEN (WATTWISE_TEST_ZEUS=1 turns it on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BASE_URL, TOKEN, unique

pytestmark = pytest.mark.skipif(
    os.environ.get("WATTWISE_TEST_ZEUS") != "1" or bool(TOKEN),
    reason="set WATTWISE_TEST_ZEUS=1 against a host without a token",
)

SCRIPT = Path(__file__).with_name("zeus_train.py")


def run(job_id: str, *extra: str) -> dict:
    p = subprocess.run(
        [sys.executable, str(SCRIPT), BASE_URL, job_id, *extra],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, p.stdout + p.stderr
    return json.loads(lines[-1])


def test_zeus_client_runs(api):
    job_id = unique("zeusclient")
    first = run(job_id)
    assert (first["batch_size"], first["trial_number"], first["outcome"], first["epochs"]) == (32, 1, "converged", 3)

    created = api.state(job_id)
    assert created["params"]["max_power"] == 300.0      # 300 W from the stand-in GPU
    assert created["params"]["gpu_model"] == "NVIDIA A100-SXM4-40GB"
    assert created["min_cost_batch_size"] == 32

    early = run(job_id)
    assert early["batch_size"] == 16
    assert early["outcome"] == "failed" and "exceeded the cost upper bound" in early["message"]
    assert early["epochs"] == 3

    capped = run(job_id)
    assert capped["batch_size"] == 64
    assert capped["outcome"] == "failed" and "max_epoch" in capped["message"]
    assert capped["epochs"] == 5

    crashed = run(job_id, "--crash-after", "1")
    assert crashed["outcome"] == "crashed"

    after = run(job_id)
    assert after["batch_size"] == 32 and after["outcome"] == "converged"

    trials = {t["trial_number"]: t for t in api.get(f"/jobs/{job_id}/trials").json()}
    assert trials[1]["status"] == "Succeeded" and trials[1]["converged"] is True
    assert trials[1]["time"] == 30.0 and trials[1]["energy"] == 6000.0
    assert trials[early["trial_number"]]["converged"] is False
    assert trials[capped["trial_number"]]["converged"] is False
    # The crashed run's trial was ended by the client's at-exit PATCH /trials.
    assert trials[crashed["trial_number"]]["status"] == "Failed"
    assert trials[after["trial_number"]]["status"] == "Succeeded"
    assert all(t["status"] != "Dispatched" for t in trials.values())
