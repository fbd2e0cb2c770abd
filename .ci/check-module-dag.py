#!/usr/bin/env python3
"""Fails if a module of the core imports, directly or through others, a module
that imports it (issue 13: the core's modules import in one direction).

A module's imports are the paths it names outside comments and outside its
`#[cfg(test)]` test module: `crate::a::b`, `super::x` and, in a parent module,
`child::x`. Each path counts as an edge to the longest module it starts with.
Run from the repository root: `python3 .ci/check-module-dag.py [core/src]`.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "core/src"


def module_name(path):
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, "::")
    if rel == "lib":
        return "crate"
    if rel.endswith("::mod"):
        rel = rel[: -len("::mod")]
    return rel


def strip(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    # Drop the test module: `#[cfg(test)] mod tests { ... }` up to its closing brace.
    m = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", src)
    if m:
        depth, i = 1, m.end()
        while i < len(src) and depth:
            depth += {"{": 1, "}": -1}.get(src[i], 0)
            i += 1
        src = src[: m.start()] + src[i:]
    return src


files = {}
for dirpath, _, names in os.walk(root):
    for name in names:
        if name.endswith(".rs"):
            path = os.path.join(dirpath, name)
            files[module_name(path)] = strip(open(path, encoding="utf-8").read())
modules = set(files)


def resolve(parts):
    for k in range(len(parts), 0, -1):
        candidate = "::".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


graph = {}
for name, src in files.items():
    here = [] if name == "crate" else name.split("::")
    children = {m.split("::")[-1] for m in modules if m.rsplit("::", 1)[0] == name and "::" in m}
    if name == "crate":
        children = {m for m in modules if "::" not in m and m != "crate"}
    paths = []
    # Expand `use a::{b, c::d}` groups one level so each item is a path.
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)*)::\{([^;]*?)\}", src, re.S):
        for item in re.findall(r"\w+(?:::\w+)*", m.group(2)):
            paths.append(m.group(1) + "::" + item)
    paths += re.findall(r"\b(?:crate|super)(?:::\w+)+", src)
    paths += [p for p in re.findall(r"(?<![:\w])(\w+)(?:::\w+)+", src) if p in children]
    edges = set()
    for p in paths:
        parts = p.split("::")
        if parts[0] == "crate":
            target = resolve(parts[1:])
        elif parts[0] == "super":
            base = here[:]
            while parts and parts[0] == "super":
                base, parts = base[:-1], parts[1:]
            target = resolve(base + parts) or ("::".join(base) or "crate")
        else:  # a child module named from its parent
            target = resolve(here + [parts[0]])
        if target and target != name and target != "crate":
            edges.add(target)
    graph[name] = edges

# Strongly connected components (Tarjan): any with two or more modules is a cycle.
index, low, stack, on_stack, cycles = {}, {}, [], set(), []
sys.setrecursionlimit(100000)


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        component = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            component.append(w)
            if w == v:
                break
        if len(component) > 1:
            cycles.append(sorted(component))


for v in sorted(graph):
    if v not in index:
        visit(v)

if "-v" in sys.argv:
    for v in sorted(graph):
        print(f"{v} -> {', '.join(sorted(graph[v])) or '-'}")
if cycles:
    for c in cycles:
        inner = {v: sorted(graph[v] & set(c)) for v in c}
        print("cycle among modules:", ", ".join(f"{v} -> {inner[v]}" for v in c))
    sys.exit(1)
print(f"{len(graph)} modules of {root}, no import cycle")
