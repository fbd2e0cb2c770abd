"""The job list's latency (a benchmark, not a test): GET /jobs pages on a running
endpoint holding N jobs, first pages and pages deep in the list, one keep-alive
connection, one request at a time.

Usage: python list_bench.py BASE_URL JOBS [REQUESTS]
Registers jobs until the endpoint holds JOBS of this run's prefix, then times
REQUESTS (default 2000) list requests of 50 jobs and prints p50/p99/max in ms.
"""

import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests


def spec(job_id: str) -> dict:
    return {
        "job_id": job_id, "job_id_prefix": job_id.split("-")[0], "batch_sizes": [16, 32, 64],
        "default_batch_size": 32, "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "A40",
    }


def main() -> None:
    base, jobs = sys.argv[1].rstrip("/"), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    prefix = "lb" + uuid.uuid4().hex[:6]

    def register(i: int) -> None:
        s = requests.Session()
        for k in range(i, jobs, 8):
            r = s.post(f"{base}/jobs", json=spec(f"{prefix}-{k:06d}"))
            assert r.status_code == 201, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(register, range(8)))

    s = requests.Session()
    # Cursors of pages through the whole list, to time deep pages too.
    cursors, cursor = [None], None
    while True:
        page = s.get(f"{base}/jobs", params={"limit": 50, **({"cursor": cursor} if cursor else {})}).json()
        cursor = page["next_cursor"]
        if not cursor:
            break
        cursors.append(cursor)
    lat = []
    for i in range(n):
        c = cursors[i % len(cursors)]
        t0 = time.perf_counter()
        r = s.get(f"{base}/jobs", params={"limit": 50, **({"cursor": c} if c else {})})
        lat.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        assert len(r.json()["jobs"]) > 0
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
    print(json.dumps({"jobs": jobs, "pages": len(cursors), "requests": n, "p50_ms": round(q(0.5), 3),
                      "p99_ms": round(q(0.99), 3), "max_ms": round(lat[-1], 3)}))


if __name__ == "__main__":
    main()
