#!/usr/bin/env python3
"""End-to-end tests of a run across hosts: three agents (`wattwise run --run-id
--hosts --host-rank`), each on its own fake GPU host of 8 GPUs (its own fake NVML
state, loaded through nvml-wrapper), all talking to one real `wattwise-server`
through a recording proxy. The endpoint is their only rendezvous.

Environment: WATTWISE_BIN, FAKE_NVML_LIB, WATTWISE_SERVER_BIN (run.sh sets them).
Usage: multihost.py [TEST_NAME_SUBSTRING...]
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
from agent_harness import TRAIN, Host, Recorder, process_gone, read_history, run_suite, wait_agent, wait_until  # noqa: E402

HOSTS = 3


def start_agents(hosts, url, job_name, identities, train_args, host_timeout, **job_fields):
    """One agent per host; `identities[rank]` is (flags, environment) naming the run."""
    procs = []
    for rank, host in enumerate(hosts):
        job = host.job(job_name, job_id=f"{job_name}-1", **job_fields)
        flags, env = identities[rank]
        procs.append(host.agent([
            "run", "--server", url, "--job", job, "--grace", "2", *flags,
            "--host-timeout", str(host_timeout),
            "--", sys.executable, TRAIN, *train_args[rank],
        ], env))
    return procs


def by_flags(run_id, rank, hosts=HOSTS):
    return (["--run-id", run_id, "--hosts", str(hosts), "--host-rank", str(rank)], {})


def finish(procs, timeout):
    """(exit code, stderr) of each agent, in rank order."""
    return [(code, err) for code, _, err in (wait_agent(p, timeout) for p in procs)]


def get(url, path):
    import urllib.request
    with urllib.request.urlopen(url + path, timeout=10) as r:
        return json.loads(r.read())


def line_with(err, needle):
    lines = [l for l in err.splitlines() if needle in l]
    assert lines, f"no line with {needle!r} in:\n{err}"
    return lines[-1]


def test_three_hosts_are_one_trial_with_one_power_limit(tmp, server):
    proxy = Recorder(server.port)
    proxy.up()
    hosts = [Host(tmp, f"mh{r}", count=8, start_limit_w=300, history=True) for r in range(HOSTS)]
    gts = [os.path.join(h.dir, "gt.json") for h in hosts]
    # Host 2 is slower (its steps take longer): the run's time is its time.
    step_times = ["0.03", "0.03", "0.04"]
    train = [["--epochs", "12", "--steps", "40", "--step-time", step_times[r], "--ground-truth", gts[r]]
             for r in range(HOSTS)]
    # Ranks 0 and 1 by flags, rank 2 from Slurm's environment (srun's, one task per node).
    slurm = {"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_NNODES": "3", "SLURM_NODEID": "2"}
    identities = [by_flags("slurm-77.0", 0), by_flags("slurm-77.0", 1), ([], slurm)]
    procs = start_agents(hosts, proxy.url, "mhone", identities, train, 20, max_epochs=5, target_metric=0.99,
                         power={"selector": {"kind": "energy"}, "wait_steps": 1})
    results = finish(procs, 180)
    proxy.down()
    for rank, (rc, err) in enumerate(results):
        assert rc == 0, (rank, err)
    errs = [err for _, err in results]
    for rank, err in enumerate(errs):
        print(f"    host {rank}: {line_with(err, 'agent CPU').split('; ')[-1]}")
    # One trial, one batch size.
    trial_lines = {line_with(e, "[wattwise] job mhone-1: trial").split("(run")[0] for e in errs}
    assert len(trial_lines) == 1, trial_lines
    trials = get(server.url, "/jobs/mhone-1/trials")
    assert len(trials) == 1, trials
    (trial,) = trials
    assert trial["status"] == "Succeeded", trial
    run = get(server.url, "/jobs/mhone-1/runs/slurm-77.0")
    assert run["status"] == "stopped" and run["reported_epoch"] == 5, run
    # The same power limit on every host, chosen from all three profiles.
    limit = run["power_limit"]
    assert limit is not None and run["profiled"] == HOSTS, run
    for rank, (host, err) in enumerate(zip(hosts, errs)):
        assert f"power limit {limit} W on every host (chosen from 3 hosts' profiles)" in err, (rank, err)
        segments = read_history(host.history)
        for gpu in range(8):
            limits = [s["limit_mw"] for s in segments if s["gpu"] == gpu]
            # It ran the run's limit, and its own limits came back at the end.
            assert limit * 1000 in limits and limits[-1] == 300_000, (rank, gpu, limits)
        assert host.limits_w() == [300.0] * 8
    # One report per epoch to the optimizer: every host's energy summed, the
    # slowest host's time; the trial's result is epoch 5's.
    epochs = {e["epoch"]: e for e in run["epochs"]}
    assert sorted(epochs) == [1, 2, 3, 4, 5], run
    assert all(e["hosts"] == HOSTS for e in epochs.values())
    sent = {}
    for path, body in proxy.posts:
        if path == "/jobs/mhone-1/runs/slurm-77.0/report":
            sent[(body["host_rank"], body["current_epoch"])] = body
    for e in range(1, 6):
        per_host = [sent[(r, e)] for r in range(HOSTS)]
        assert epochs[e]["time"] == max(b["time"] for b in per_host), (e, per_host)
        assert abs(epochs[e]["energy"] - sum(b["energy"] for b in per_host)) < 1e-6 * epochs[e]["energy"]
    assert max(range(HOSTS), key=lambda r: sent[(r, 5)]["time"]) == 2
    assert (trial["energy"], trial["time"]) == (epochs[5]["energy"], epochs[5]["time"]), (trial, epochs[5])
    # Each host's report carries its meter's bound; the run's epoch carries their
    # sum, and the trial the last epoch's (issue 23).
    for e in range(1, 6):
        per_host = [sent[(r, e)]["energy_uncertainty_j"] for r in range(HOSTS)]
        assert all(isinstance(u, float) and u >= 0 for u in per_host), (e, per_host)
        assert abs(epochs[e]["energy_uncertainty_j"] - sum(per_host)) <= 1e-9 * max(1.0, sum(per_host)), (e, per_host, epochs[e])
    assert trial["energy_uncertainty_j"] == epochs[5]["energy_uncertainty_j"], (trial, epochs[5])
    # Each host's profile carries a bound per limit; the run's combined profile their sums per step.
    profiles = [body for path, body in proxy.posts if path == "/jobs/mhone-1/runs/slurm-77.0/profile"]
    assert sorted(p["host_rank"] for p in profiles) == list(range(HOSTS)), profiles
    for p in profiles:
        assert all(m["energy_uncertainty_j"] >= 0 for m in p["measurements"]), p
    (doc_run,) = get(server.url, "/jobs/mhone-1")["runs"]
    for point in doc_run["profile"]:
        per_step = [next(m["energy_uncertainty_j"] / m["steps"] for m in p["measurements"] if m["power_limit"] == point["power_limit"])
                    for p in profiles]
        assert abs(point["energy_uncertainty_j"] - sum(per_step)) <= 1e-9 * max(1.0, sum(per_step)), (point, per_step)
    print(f"    run bound at epoch 5: {epochs[5]['energy_uncertainty_j']:.3f} J over {HOSTS} hosts; uncertain note: {doc_run.get('uncertain', [])}")
    # Against the three fakes' ground truth (noted just before each epoch_end event).
    truth = []
    for gt in gts:
        with open(gt) as f:
            truth.append(json.load(f)["epochs_mj"])
    for e in range(2, 6):
        reported = epochs[e]["energy"] - epochs[1]["energy"]
        true_j = sum(t[e - 1] - t[0] for t in truth) / 1000
        rel = abs(reported - true_j) / true_j
        print(f"    epochs 2-{e}: {reported:.1f} J reported over 3 hosts, {true_j:.1f} J ground truth ({rel:.3%})")
        assert rel < 0.005, (e, reported, true_j)


def test_a_killed_host_fails_the_run_and_the_others_exit_cleanly(tmp, server):
    hosts = [Host(tmp, f"mhk{r}", count=8, start_limit_w=275) for r in range(HOSTS)]
    pids = [os.path.join(h.dir, "pids") for h in hosts]
    train = [["--epochs", "200", "--steps", "20", "--step-time", "0.03", "--pids", pids[r]] for r in range(HOSTS)]
    timeout_s = 3
    # Rank 0 by flags, ranks 1 and 2 as torchrun workers would see it.
    identities = [by_flags("kill-run", 0)] + [
        ([], {"TORCHELASTIC_RUN_ID": "kill-run", "GROUP_WORLD_SIZE": "3", "GROUP_RANK": str(r)}) for r in (1, 2)]
    procs = start_agents(hosts, server.url, "mhkill", identities, train, timeout_s, max_epochs=1000,
                         power={"pl_step": 100})
    try:
        wait_until(lambda: _run_or_none(server.url, "/jobs/mhkill-1/runs/kill-run", lambda r: r["reported_epoch"] >= 2),
                   60, "every host to report two epochs")
        os.kill(procs[2].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        with open(pids[2]) as f:
            main2, _ = map(int, f.read().split())
        os.killpg(main2, signal.SIGKILL)  # host 2's training group (its agent is gone)
        procs[2].communicate(timeout=30)
        results = finish(procs[:2], 60)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    took = time.monotonic() - killed_at
    print(f"    the other agents exited {took:.1f} s after the SIGKILL (host timeout {timeout_s} s)")
    assert took < timeout_s + 10, took
    for rank, (rc, err) in enumerate(results):
        # A clean exit: no signal, no panic, the run's failure named, limits restored.
        assert rc == 1, (rank, rc, err)
        assert "panicked" not in err, err
        assert "host 2" in line_with(err, "run kill-run: failed"), err
        assert "restored the power limits found at start" in err, err
        assert hosts[rank].limits_w() == [275.0] * 8, (rank, hosts[rank].limits_w())
        with open(pids[rank]) as f:
            main_pid, helper_pid = map(int, f.read().split())
        wait_until(lambda: process_gone(main_pid) and process_gone(helper_pid), 5, "the training group to die")
    run = get(server.url, "/jobs/mhkill-1/runs/kill-run")
    assert run["status"] == "failed" and run["message"].startswith("host 2 ("), run
    (trial,) = get(server.url, "/jobs/mhkill-1/trials")
    assert trial["status"] == "Failed", trial


def test_a_run_across_hosts_needs_one_job_id_and_a_rank(tmp, server):
    host = Host(tmp, "mhbad", count=1, start_limit_w=275)
    no_id = host.job("mhbad")  # job_id_prefix only: each host would register its own job
    for flags, env, needle in [
        (["--run-id", "r", "--hosts", "2", "--host-rank", "0"], {}, "job_id: run \"r\" spans 2 hosts"),
        (["--hosts", "2", "--run-id", "r"], {}, "--host-rank"),
        ([], {"SLURM_JOB_ID": "5", "SLURM_NNODES": "2", "SLURM_NODEID": "7"}, "--host-rank: 7 is not below"),
        ([], {"PET_RDZV_ID": "x", "PET_NNODES": "1:4", "PET_NODE_RANK": "0"}, "PET_NNODES"),
        (["--hosts", "0"], {}, "--hosts: 0 hosts"),
        # torchrun's default --rdzv_id names every run of the job alike.
        ([], {"TORCHELASTIC_RUN_ID": "none", "GROUP_WORLD_SIZE": "2", "GROUP_RANK": "0"}, "--rdzv_id"),
    ]:
        p = host.agent(["run", "--server", server.url, "--job", no_id, *flags, "--", "true"], env)
        _, err = p.communicate(timeout=30)
        assert p.returncode != 0 and needle in err, (flags, env, err)
    assert host.limits_w() == [275.0]


def _run_or_none(url, path, pred):
    import urllib.error
    try:
        return pred(get(url, path))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise


def main():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    return run_suite(tests, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
