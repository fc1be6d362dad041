"""The package's layers (issue 17): no import cycles, no upward imports.

Layers, lowest first:

* the codec: the modules at the top of bac_ref/ (g_a, vbq, priors, entropy_model,
  intmodels, rangecoder, bitstream, g_s, codec, model, weights, layers, imageio, errors);
* the jobs built on it: bac_ref/conformance/, embeddings/, training/, bench/ (they may use
  each other);
* the application: cli, tour, __main__.

A module may import its own layer and the layers below it, never one above (imports inside
functions count too), and the module graph has no cycle.  The import graph is read from the
source (ast), so the test needs no optional dependency.  KNOWN lists the upward imports
that existed when the layers were drawn, each with what it is for; the test fails on any
other, and on a KNOWN entry that no longer exists (remove it then).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = {"bac_ref.cli", "bac_ref.tour", "bac_ref.__main__"}
KNOWN = {
    ("bac_ref.bench.bench_targets", "bac_ref.cli"):
        "the benchmark times `bac-ref compress` itself (cli.compress_file), in-process",
}
# what `import bac_ref.codec` may load beyond the codec layer (see KNOWN)
CODEC_MAY_LOAD = set()


def _modules():
    mods = {}
    for folder, _, files in os.walk(os.path.join(REPO, "bac_ref")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                parts = os.path.relpath(path, REPO)[:-3].split(os.sep)
                is_pkg = parts[-1] == "__init__"
                mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _graph():
    """{module: {imported bac_ref module, ...}} over every import statement."""
    mods = _modules()
    graph = {}
    for name, (path, is_pkg) in mods.items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
        out = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = name.split(".") if is_pkg else name.split(".")[:-1]
                    parts = parts[:len(parts) - node.level + 1]
                    src = ".".join(parts + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                for a in node.names:
                    if f"{src}.{a.name}" in mods:
                        out.add(f"{src}.{a.name}")
                    elif src in mods:
                        out.add(src)
            elif isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in mods}
        out.discard(name)
        graph[name] = out
    return graph


def _layer(module: str) -> int:
    if module in APP:
        return 2
    parts = module.split(".")
    if len(parts) >= 2 and (parts[1] in ("conformance", "embeddings", "training", "bench")):
        return 1
    return 0


def test_no_upward_imports():
    graph = _graph()
    upward = {(m, t) for m, targets in graph.items() for t in targets if _layer(t) > _layer(m)}
    new = sorted(upward - set(KNOWN))
    assert not new, "upward imports (a lower layer importing a higher one): " + ", ".join(
        f"{m} -> {t}" for m, t in new)
    stale = sorted(set(KNOWN) - upward)
    assert not stale, f"KNOWN lists imports that are gone, remove them: {stale}"


def test_no_import_cycles():
    graph = _graph()
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if (m, t) in KNOWN:
                continue
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_codec_loads_only_the_codec():
    code = ("import sys, bac_ref.codec; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('bac_ref'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    assert "bac_ref.codec" in out
    higher = sorted(m for m in out if _layer(m) > 0 and m not in CODEC_MAY_LOAD)
    assert not higher, f"import bac_ref.codec loads {higher}"
