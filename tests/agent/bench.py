#!/usr/bin/env python3
"""The agent's own CPU use while measuring (run by tests/agent/bench.sh).

1. `wattwise measure --format json -- sleep 10` at the default sampling interval
   (1 s), three times: the agent's CPU seconds (getrusage of itself) over 10 s.
2. The same on a GPU without an energy counter (FAKE_NVML_NO_ENERGY=all, a
   pre-Volta GPU): the agent samples its power every 0.1 s (the default
   --power-interval) and integrates it.
3. `wattwise run` with the default power settings (1/10/40 steps, 25 W) around
   agent/examples/train.py (3 epochs of 300 steps of 20 ms, ~50 events/s) against
   wattwise-server: the agent's CPU share from its final log line.
"""

import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402


def main():
    with tempfile.TemporaryDirectory(prefix="wattwise-agent-bench-") as tmp:
        server = e2e.Server(os.path.join(tmp, "db")).start()
        try:
            host = e2e.Host(tmp, "bench")
            for i in range(3):
                p = host.agent(["measure", "--format", "json", "--", "sleep", "10"])
                _, err = p.communicate(timeout=60)
                m = json.loads(err.strip().splitlines()[-1])
                print(f"measure sleep 10 (#{i + 1}): agent CPU {m['agent_cpu_s'] * 1000:.1f} ms over "
                      f"{m['time_s']:.2f} s = {m['agent_cpu_s'] / m['time_s']:.4%} of a core")
            sampled = e2e.Host(tmp, "bench-sampled", fake={"FAKE_NVML_NO_ENERGY": "all"})
            for i in range(3):
                p = sampled.agent(["measure", "--format", "json", "--", "sleep", "10"])
                _, err = p.communicate(timeout=60)
                m = json.loads(err.strip().splitlines()[-1])
                assert m["energy_source"] == "sampled", m
                print(f"measure sleep 10, no energy counter, power sampled every 0.1 s (#{i + 1}): agent CPU "
                      f"{m['agent_cpu_s'] * 1000:.1f} ms over {m['time_s']:.2f} s = "
                      f"{m['agent_cpu_s'] / m['time_s']:.4%} of a core")
            job = os.path.join(host.dir, "bench.toml")
            with open(job, "w") as f:
                f.write('job_id_prefix = "bench"\nbatch_sizes = [64]\ndefault_batch_size = 64\n'
                        'target_metric = 0.99\nmax_epochs = 3\n')
            rc, _, err = host.run(server.url, job, ["--epochs", "3", "--steps", "300", "--step-time", "0.02"],
                                  timeout=300)
            assert rc == 0, err
            line = [l for l in err.splitlines() if "agent CPU" in l][-1]
            cpu = re.search(r"agent CPU ([0-9.]+) s \(([0-9.]+)% of a core\)", line)
            wall = re.search(r"epoch\(s\): ([0-9.]+) s", line)
            print(f"run, 3 epochs x 300 steps, default profiling: agent CPU {float(cpu.group(1)) * 1000:.0f} ms over "
                  f"{float(wall.group(1)):.1f} s = {cpu.group(2)}% of a core")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
