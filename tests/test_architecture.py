"""The shape of the code, read from the source with ``ast`` (nothing is imported).

* the import graph of ``mplmm`` and ``mplmm_widgets`` has no cycle, counting imports inside functions;
* interpretation, plots and prediction never reach training through any chain of imports;
* the core never imports the workbench glue (``mplmm.workbench``); ``mplmm.cli`` may;
* no function outside the tests is longer than :data:`MAX_FUNCTION_LINES` lines.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: top-level package name → its folder in the checkout
PACKAGES = {"mplmm": ROOT / "mplmm", "mplmm_widgets": ROOT / "widgets"}
MAX_FUNCTION_LINES = 60
WORKBENCH = "mplmm.workbench"
#: core modules allowed to import the workbench (the command line reaches everything)
WORKBENCH_IMPORTERS = {"mplmm.cli"}
#: these (and their submodules) must not reach mplmm.train
NO_TRAINING = ("mplmm.interpret", "mplmm.plots", "mplmm.prediction")


def source_files() -> dict[str, Path]:
    """Module name → file, for every ``.py`` file of the packages (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for top, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[:len(anchor) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def _owner(name: str, modules: set[str]) -> Optional[str]:
    """The longest module of ours that ``name`` names or lies inside (None for another package)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> Iterator[str]:
    """The modules of ours that ``module`` imports anywhere in its file: ``from pkg import sub`` is an edge to
    ``pkg.sub`` when that is a module, else to ``pkg``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _owner(alias.name, modules)
                if target is not None:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, is_package, node)
            for alias in node.names:
                target = _owner(f"{base}.{alias.name}", modules) if alias.name != "*" else None
                target = target if target is not None and target != _owner(base, modules) else _owner(base, modules)
                if target is not None:
                    yield target


def import_graph() -> dict[str, set[str]]:
    files = source_files()
    names = set(files)
    return {m: set(imports_of(m, p, names)) - {m} for m, p in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, comp) for comp in components]


def _cycle_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A concrete cycle through the component's first module (breadth-first, so the shortest one)."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a component always has one


def reachable(graph: dict[str, set[str]], starts: list[str]) -> dict[str, str]:
    """Every module importing ``starts`` runs, with the module that imported it (importing ``a.b.c`` also runs the
    packages ``a`` and ``a.b``)."""
    seen = {s: "" for s in starts}
    queue = list(starts)
    while queue:
        v = queue.pop(0)
        parents = [".".join(v.split(".")[:i]) for i in range(1, v.count(".") + 1)]
        for w in sorted(graph[v]) + [p for p in parents if p in graph]:
            if w not in seen:
                seen[w] = v
                queue.append(w)
    return seen


def _chain(seen: dict[str, str], target: str) -> str:
    out = [target]
    while seen[out[-1]]:
        out.append(seen[out[-1]])
    return " → ".join(reversed(out))


GRAPH = import_graph()


def test_the_scan_sees_the_packages():
    assert "mplmm.train" in GRAPH and "mplmm_widgets.panels" in GRAPH
    assert "mplmm.models.base" in GRAPH["mplmm.models.mult"]  # from .base import ...
    assert "mplmm.metrics" in GRAPH["mplmm.evaluate"]  # from . import metrics as M: the module, not the package
    assert "mplmm.train" in GRAPH["mplmm.workbench.tuning"]  # an import inside a function counts
    assert "mplmm.workbench.runs" in GRAPH["mplmm_widgets.panels"]  # from mplmm.workbench import runs


def test_find_cycles_names_each_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e2"}, "e2": {"e"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


@pytest.mark.parametrize("package", NO_TRAINING)
def test_no_path_to_training(package):
    starts = [m for m in GRAPH if m == package or m.startswith(package + ".")]
    seen = reachable(GRAPH, starts)
    assert "mplmm.train" not in seen, f"{package} reaches training: {_chain(seen, 'mplmm.train')}"


def test_core_does_not_import_the_workbench():
    bad = sorted(f"{m} imports {t}" for m, targets in GRAPH.items()
                 if (m == "mplmm" or m.startswith("mplmm.")) and not m.startswith(WORKBENCH)
                 and m not in WORKBENCH_IMPORTERS
                 for t in targets if t == WORKBENCH or t.startswith(WORKBENCH + "."))
    assert not bad, "the core imports the workbench glue:\n" + "\n".join(bad)


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (n lines)`` for every function (or method) longer than ``limit`` lines, def to last line."""
    out = []
    for path in source_files().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_long_functions():
    long = long_functions()
    assert not long, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
