#!/usr/bin/env python3
"""Real clients for the jobs-page test (tests/jobs-page/run.sh runs them).

    clients.py zeus URL ZEUS_PYTHON OUT_JSON   Zeus's own client (zeus==0.16.0, run
        by ZEUS_PYTHON, tests/conformance/zeus_train.py, one process per training run)
        makes two jobs: one with three runs (reached the target at the default batch
        size, stopped above beta x min cost, stopped at max epochs), one with one run.
    clients.py agent URL JOB_ID                 `wattwise run` (the agent, on the fake
        NVML) runs agent/examples/train.py once for JOB_ID, to its target: a run at a
        batch size without a profile profiles the power limits and posts it. Sends
        WATTWISE_TOKEN when it is set.

Each prints what it made as JSON (zeus: also to OUT_JSON). Environment (run.sh sets
it): WATTWISE_BIN, FAKE_NVML_LIB, WATTWISE_SERVER_BIN. Exits non-zero, saying why,
when a client fails.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
ZEUS_TRAIN = os.path.join(ROOT, "tests", "conformance", "zeus_train.py")


def zeus_run(url, python, job_id):
    p = subprocess.run([python, ZEUS_TRAIN, url, job_id], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise SystemExit(f"clients.py: Zeus's client failed for {job_id}:\n{p.stderr}")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"clients.py: Zeus's client printed no result for {job_id}:\n{p.stdout}{p.stderr}")
    return json.loads(lines[-1])


def zeus(url, python, out):
    tag = os.urandom(3).hex()
    # zeus_train.py registers with job_id_prefix "zeusclient".
    three, one = f"zeusclient-page{tag}-a", f"zeusclient-page{tag}-b"
    runs = [zeus_run(url, python, three) for _ in range(3)]
    outcomes = [(r["batch_size"], r["outcome"]) for r in runs]
    # zeus_train.py's workload: 32 reaches the target, 16 costs too much, 64 never converges.
    if outcomes != [(32, "converged"), (16, "failed"), (64, "failed")]:
        raise SystemExit(f"clients.py: unexpected runs of Zeus's client: {runs}")
    single = zeus_run(url, python, one)
    made = {"zeus": [three, one], "zeus_runs": runs + [single]}
    with open(out, "w") as f:
        json.dump(made, f)
    print(json.dumps(made))


def agent(url, job_id):
    from agent_harness import Host  # noqa: E402 (needs run.sh's environment)

    with tempfile.TemporaryDirectory() as tmp:
        host = Host(tmp, "page")
        job = host.job(
            # train.py's metric reaches 0.6 at epoch 2 at batch size 64, at 3 at 32.
            "agentpage", job_id=job_id, batch_sizes=[32, 64], default_batch_size=64,
            target_metric=0.6, max_epochs=4,
            power={"selector": {"kind": "energy"}, "profile_steps": 10},
        )
        token = os.environ.get("WATTWISE_TOKEN")
        rc, _, err = host.run(
            url, job, ["--epochs", "4", "--steps", "40", "--step-time", "0.02"],
            extra_env={"WATTWISE_TOKEN": token} if token else None,
        )
        if rc != 0:
            raise SystemExit(f"clients.py: the agent failed (exit {rc}):\n{err}")
        if host.limits_w() != [300.0]:
            raise SystemExit(f"clients.py: the agent left the fake GPU at {host.limits_w()} W")
    print(json.dumps({"agent": job_id}))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "zeus":
        zeus(*sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "agent":
        agent(*sys.argv[2:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
