"""The layers import downward only: launch.py -> sweep/ -> nrfer/, no package has an import
circle, and nrfer never imports the frameworks the sweep is built on (Ray, MLflow, Optuna).

Read from the source (every import statement, function-local ones included), so a circle
hidden behind a function-local import counts as one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO

FRAMEWORKS = ("ray", "mlflow", "optuna")


def module_names(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """(dotted module name, line) of every import in the file, relative ones resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".")
                base = base if path.name == "__init__.py" else base[:-1]
                module = ".".join(base[: len(base) - node.level + 1] + ([module] if module else []))
            out.append((module, node.lineno))
            out += [(f"{module}.{a.name}", node.lineno) for a in node.names]
    return out


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (a `from pkg import name` counts as
    an import of pkg.name when that is a module, else of pkg)."""
    mods = module_names(package)
    graph = {}
    for name, path in mods.items():
        deps = set()
        for target, _ in imported_names(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", ["nrfer", "sweep"])
def test_no_import_circle(package):
    graph = import_graph(package)
    assert len(graph) > 10  # the source was found
    assert cycles(graph) == [], f"import circles in {package}/"


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nrfer_never_imports_the_sweep_or_its_frameworks():
    upward = [
        f"{path.relative_to(REPO)}:{line}: {target}"
        for name, path in module_names("nrfer").items()
        for target, line in imported_names(name, path)
        if target.split(".")[0] in (*FRAMEWORKS, "sweep", "launch")
    ]
    assert upward == []


def test_sweep_never_imports_the_launcher():
    upward = [
        f"{path.relative_to(REPO)}:{line}"
        for name, path in module_names("sweep").items()
        for target, line in imported_names(name, path)
        if target.split(".")[0] == "launch"
    ]
    assert upward == []
