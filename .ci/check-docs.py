#!/usr/bin/env python3
"""The docs name only what exists.

Every tracked Markdown file is read for the things a reader would go and open:
- relative links, `[text](path#anchor)`;
- code spans that are paths (`core/src/route.rs`, `tests/agent/run.sh`), resolved
  against the doc's folder, then the repository root, then the folder a doc's
  crate lives in (a crate's README may say `src/worker/mod.rs`);
- Rust module paths into the core (`wattwise_core::sim::catalog`), which must be
  a module file or a `mod` declared in its parent.

Prints each stale name with the doc and line that holds it, and exits 1 if any.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# What a path-like code span must look like to be checked: at least one `/` and a
# file name with an extension we track, or a folder ending in `/`.
EXTENSIONS = ("rs", "py", "sh", "js", "mjs", "toml", "md", "html", "css", "json", "service", "txt", "csv")
PATH_SPAN = re.compile(r"`([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+/?)(?::\d+)?`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CORE_PATH = re.compile(r"`?wattwise_core((?:::[a-z_][a-z0-9_]*)+)")


def tracked_docs():
    out = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


def looks_like_path(span: str) -> bool:
    if span.endswith("/"):
        return True
    name = span.rsplit("/", 1)[-1]
    return "." in name and name.rsplit(".", 1)[-1] in EXTENSIONS


def ignored(path: pathlib.Path, folder: bool) -> bool:
    """A build output (git ignores it): named by the docs, made by a build."""
    name = str(path) + ("/" if folder else "")
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", name], cwd=ROOT).returncode == 0


def outside(doc: pathlib.Path, target: str) -> bool:
    """A name beside the repository (the development checkout's neighbours), which
    a user's clone does not have: not the docs' to keep."""
    return not (doc.parent / target).resolve().is_relative_to(ROOT)


def resolves(doc: pathlib.Path, target: str) -> bool:
    target = target.split("#", 1)[0]
    if not target:
        return True  # an anchor in the same doc
    bases = [doc.parent, ROOT]
    # A crate's README may name files from the crate's root.
    for parent in doc.parents:
        if (parent / "Cargo.toml").exists() or (parent / "package.json").exists():
            bases.append(parent)
        if parent == ROOT:
            break
    folder = target.endswith("/")
    return any((base / target).exists() or ignored(base / target, folder) for base in bases)


def core_module_exists(parts) -> bool:
    """`sim::catalog::Catalog` is fine if `sim/catalog.rs` exists: items are not
    checked, only the modules up to the first name that is not a module."""
    here = ROOT / "core" / "src"
    checked = 0
    for part in parts:
        as_file = here / f"{part}.rs"
        as_dir = here / part
        if as_file.exists() or (as_dir / "mod.rs").exists():
            here = as_dir
            checked += 1
            continue
        # Not a module file: fine if it is an item or inline module of the last
        # module we reached (it cannot be checked without parsing Rust), but the
        # first segment must be a module of the crate.
        return checked > 0
    return True


def main() -> int:
    stale = []
    for doc in tracked_docs():
        rel = doc.relative_to(ROOT)
        in_fence = False
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
                continue
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                    continue
                if not resolves(doc, target):
                    stale.append(f"{rel}:{number}: link to {target}, which does not exist")
            if in_fence:
                continue
            for span in PATH_SPAN.findall(line):
                if outside(doc, span) or not looks_like_path(span):
                    continue
                if not resolves(doc, span):
                    stale.append(f"{rel}:{number}: `{span}`, which does not exist")
            for path in CORE_PATH.findall(line):
                parts = path.strip(":").split("::")
                if not core_module_exists(parts):
                    stale.append(f"{rel}:{number}: wattwise_core{path}, no such module in core/src")
    for line in stale:
        print(line)
    if stale:
        print(f"{len(stale)} name(s) in the docs do not exist (above)", file=sys.stderr)
        return 1
    print("every file, link and core module the docs name exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
