#!/usr/bin/env python3
"""Every retry goes through core/src/retry.rs (issue 25): its drivers, `retry` and
`retry_async`, are the only loops that try again, and only they turn a `Backoff`
into waits. Fails if Rust source elsewhere counts its own retries, loops over
attempts, or draws a back-off's waits itself. A line that only looks like one says
why it is not in a `// not a retry: <why>` comment on the line above.
Run from the repository root: `python3 .ci/check-retry-loops.py`.
"""
import re
import subprocess
import sys

DRIVER = "core/src/retry.rs"
COUNTER = r"(?:retry|retries|attempt|attempts|tries|tried)"
PATTERNS = [
    ("a retry counter kept by hand", rf"\b{COUNTER}\s*(?:\+=|=\s*{COUNTER}\s*\+)"),
    ("a loop over attempts", rf"\bfor\s+\(?\s*{COUNTER}\b"),
    ("a back-off's wait drawn outside the driver", r"Backoff::[A-Z_]+\s*\.\s*[a-z_]+\s*\("),
    ("a back-off's wait drawn outside the driver", r"\.(?:delay_ms|bound_ms)\s*\("),
]
EXCUSE = "// not a retry: "

files = subprocess.run(
    ["git", "ls-files", "*.rs"], capture_output=True, text=True, check=True
).stdout.split()
hits = []
for path in files:
    if path == DRIVER:
        continue
    lines = open(path, encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        for what, pattern in PATTERNS:
            if re.search(pattern, line) and not (i > 0 and EXCUSE in lines[i - 1]):
                hits.append(f"{path}:{i + 1}: {what}: {line.strip()}")
                break
if hits:
    print("\n".join(hits))
    print(
        f"a retry loop outside {DRIVER} (see above): call retry::retry or retry::retry_async",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"no retry loop outside {DRIVER}")
