"""The import graph of the package is a DAG with the documented layering (docs/design.md).

Layers, bottom to top:
- core: imports no stage, API or app module;
- stages: import the core and their own stage only (plus the few documented stage-to-stage
  edges in ``STAGE_DEPS``);
- API (``entityseg_data/__init__``, ``entityseg_data.api*``): composes the stages;
- apps (``cli``, ``demo``, ``__main__``): use the API and the core, never a stage.

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import is
still a dependency. ``KNOWN`` lists the violations still being removed (issue 14); the test fails
on any new one and on a listed one that is gone (so the list only shrinks).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from src_ast import src_nodes

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "entityseg_data"

CORE = {
    "errors",
    "config",
    "config_fields",
    "io",
    "masks",
    "catalog",
    "workspace",
    "vocab",
    "dataset",
    "synthetic",
    "procs",
    "logging_utils",
}
STAGES = {"ingest", "annotation", "evaluation", "stats", "export", "model"}
API = {"", "api"}
APPS = {"cli", "demo", "__main__"}
# stage -> stages it may import (documented in docs/design.md)
STAGE_DEPS: dict[str, set[str]] = {
    # training evaluates checkpoints with the same evaluator as `eval`
    "model": {"evaluation"},
}

KNOWN: set[tuple[str, str]] = set()  # none left (the list only shrinks)
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset({"entityseg_data.model.convert", "entityseg_data.model.loading"}),
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / PKG).rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (``from a import b`` counts ``a.b`` if a module).
    A fresh copy of the graph parsed once per process (several tests read it)."""
    return {mod: set(deps) for mod, deps in _parsed_graph().items()}


@functools.cache
def _parsed_graph() -> dict[str, frozenset[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    nodes = dict(src_nodes())
    graph: dict[str, frozenset[str]] = {}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str | None] = set()
        for node in nodes[path.relative_to(SRC / PKG).as_posix()]:
            if isinstance(node, ast.Import):
                deps.update(resolve(a.name) for a in node.names if a.name.startswith(PKG))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target.split(".")[0] != PKG:
                    continue
                for a in node.names:
                    full = f"{target}.{a.name}"
                    deps.add(resolve(full) if full in mods else resolve(target))
        deps.discard(None)
        deps.discard(mod)
        graph[mod] = frozenset(d for d in deps if d is not None)
    return graph


def layer_of(mod: str) -> tuple[str, str]:
    """(layer, top-level part) of a module name."""
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for layer, names in (("core", CORE), ("stage", STAGES), ("api", API), ("app", APPS)):
        if top in names:
            return layer, top
    return "unknown", top


def allowed(src: str, dst: str) -> bool:
    (ls, ts), (ld, td) = layer_of(src), layer_of(dst)
    if ls == "core":
        return ld == "core"
    if ls == "stage":
        return ld == "core" or td == ts or td in STAGE_DEPS.get(ts, set())
    if ls == "api":
        return ld in ("core", "stage", "api")
    return ld in ("core", "api", "app")  # apps use the API and the core, never a stage


def violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(s, d) for s, deps in graph.items() for d in deps if not allowed(s, d)}


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: set[frozenset[str]] = set()
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.add(frozenset(comp))
    return out


def test_every_module_has_a_layer():
    unknown = sorted(m for m in import_graph() if layer_of(m)[0] == "unknown")
    assert not unknown, f"modules outside the documented layers: {unknown}"


def test_layering():
    found = violations(import_graph())
    new = sorted(found - KNOWN)
    gone = sorted(KNOWN - found)
    assert not new, "imports against the layering (core -> stages -> API -> apps):\n" + "\n".join(
        f"  {s} -> {d}" for s, d in new
    )
    assert not gone, "fixed, remove from KNOWN:\n" + "\n".join(f"  {s} -> {d}" for s, d in gone)


def test_import_graph_is_a_dag():
    found = cycles(import_graph())
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, f"import cycles: {new}"
    assert not gone, f"fixed, remove from KNOWN_CYCLES: {gone}"


def test_checker_catches_a_violation_and_a_cycle():
    graph = {
        "entityseg_data.masks.rle": {"entityseg_data.ingest.pipeline"},
        "entityseg_data.ingest.pipeline": {"entityseg_data.ingest.report"},
        "entityseg_data.ingest.report": {"entityseg_data.ingest.pipeline"},
        "entityseg_data.stats.engine": {"entityseg_data.masks.rle"},
    }
    assert violations(graph) == {("entityseg_data.masks.rle", "entityseg_data.ingest.pipeline")}
    assert cycles(graph) == {
        frozenset({"entityseg_data.ingest.pipeline", "entityseg_data.ingest.report"})
    }
