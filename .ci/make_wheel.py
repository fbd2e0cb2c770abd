"""Writes one wattwise wheel from what .ci/wheel.sh built for a platform.

    python3 .ci/make_wheel.py OUT_DIR PLATFORM_TAG BINARY EXTENSION

The wheel holds the Python package (agent/python/src/wattwise, its .py, .pyi and
py.typed files), the native extension EXTENSION as ``wattwise/_native.abi3.so``
(PyO3, abi3: one wheel for CPython 3.8 and later), and the executable BINARY as
the script ``wattwise`` (pip installs it, mode 0755, into the environment's bin:
a real file, so ``setcap`` works on it). Metadata come from agent/pyext's
pyproject.toml ([project]) and the package's version. Prints the wheel's path.

The one cargo build of .ci/wheel.sh makes both the binary and the extension
(their dependencies compiled once); this script only packs them, as the wheel
format (PEP 427, 491) says.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "agent/python/src/wattwise"
PYPROJECT = ROOT / "agent/pyext/pyproject.toml"
README = ROOT / "agent/python/README.md"


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def metadata(project: dict, version: str) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {version}",
        f"Summary: {project['description']}",
        f"License: {project['license']['text']}",
        f"Requires-Python: {project['requires-python']}",
    ]
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    lines += ["Description-Content-Type: text/markdown", "", README.read_text()]
    return "\n".join(lines)


def main() -> None:
    out, platform, binary, extension = sys.argv[1:5]
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    init = (PACKAGE / "__init__.py").read_text()
    version = re.search(r'^__version__ = "([^"]+)"$', init, re.M)
    if not version:
        sys.exit("make_wheel: no __version__ in the package's __init__.py")
    version = version.group(1)
    name = project["name"]
    tag = f"cp38-abi3-{platform}"
    dist_info = f"{name}-{version}.dist-info"
    wheel = Path(out) / f"{name}-{version}-{tag}.whl"

    files: list[tuple[str, bytes, int]] = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".pyi", ".typed"):
            files.append((f"wattwise/{path.relative_to(PACKAGE).as_posix()}", path.read_bytes(), 0o644))
    files.append(("wattwise/_native.abi3.so", Path(extension).read_bytes(), 0o755))
    files.append((f"{name}-{version}.data/scripts/wattwise", Path(binary).read_bytes(), 0o755))
    files.append((f"{dist_info}/METADATA", metadata(project, version).encode(), 0o644))
    wheel_file = f"Wheel-Version: 1.0\nGenerator: wattwise .ci/make_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    files.append((f"{dist_info}/WHEEL", wheel_file.encode(), 0o644))
    record = "".join(f"{p},{digest(d)},{len(d)}\n" for p, d, _ in files) + f"{dist_info}/RECORD,,\n"
    files.append((f"{dist_info}/RECORD", record.encode(), 0o644))

    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for path, data, mode in files:
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    print(wheel)


if __name__ == "__main__":
    main()
