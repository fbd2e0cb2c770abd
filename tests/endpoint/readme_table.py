"""Runs lambda/README.md's `aws dynamodb create-table` command, as written there,
with the real AWS CLI against the DynamoDB that AWS_ENDPOINT_URL points at (moto in
the endpoint suite), so a table made by following the README is the table the
conformance suite then runs on: if the README's command drifts from what the store
needs (a missing key or index), the suite fails.

Usage: python readme_table.py   (prints the table name the command created)
"""

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[2] / "lambda" / "README.md"


def shell_commands(markdown: str):
    """Each command of the README's ```sh blocks, continuation lines joined."""
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        command = ""
        for line in block.splitlines():
            command += line.rstrip()
            if command.endswith("\\"):
                command = command[:-1] + " "
                continue
            if command.strip():
                yield command.strip()
            command = ""


def main() -> int:
    found = [c for c in shell_commands(README.read_text()) if c.startswith("aws dynamodb create-table")]
    if len(found) != 1:
        print(f"readme_table: wanted one `aws dynamodb create-table` command in {README}, found {len(found)}", file=sys.stderr)
        return 1
    command = found[0]
    name = re.search(r"--table-name\s+(\S+)", command)
    if not name:
        print(f"readme_table: the README's command names no --table-name: {command}", file=sys.stderr)
        return 1
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"readme_table: the README's command failed ({done.returncode}):\n{command}\n{done.stderr}", file=sys.stderr)
        return 1
    print(name.group(1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
