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


# sweep/'s rooms, lowest first: a module imports from its own room and the rooms below it;
# commands reach the runtime only through `sweep.runtime` (its public names), never its
# modules; nothing below the commands imports them.
ROOMS = {
    "sweep.compat": set(),
    "sweep.spec": set(),
    "sweep.tracking": {"sweep.compat", "sweep.spec"},
    "sweep.analysis": {"sweep.compat", "sweep.spec", "sweep.tracking"},
    "sweep.runtime": {"sweep.compat", "sweep.spec", "sweep.tracking", "sweep.analysis"},
    "sweep.commands": {
        "sweep.compat",
        "sweep.spec",
        "sweep.tracking",
        "sweep.analysis",
        "sweep.runtime",  # the package's public names only (checked below)
    },
}


def room(module: str) -> str | None:
    return next((r for r in ROOMS if module == r or module.startswith(r + ".")), None)


def test_every_sweep_module_is_in_a_room():
    homeless = [
        m for m in module_names("sweep") if room(m) is None and m not in ("sweep", "sweep.cli")
    ]
    assert homeless == []


def test_rooms_import_downward_and_commands_use_the_runtime_s_public_names():
    from sweep.runtime import PUBLIC

    public = {"sweep.runtime", *(f"sweep.runtime.{n}" for n in PUBLIC)}
    bad = []
    for name, path in module_names("sweep").items():
        mine = room(name)
        for target, line in imported_names(name, path):
            theirs = room(target)
            if mine is None or theirs is None or theirs == mine:
                continue
            where = f"{path.relative_to(REPO)}:{line}: {target}"
            if theirs not in ROOMS[mine]:
                bad.append(where)
            elif theirs == "sweep.runtime" and target not in public:
                bad.append(where + " (use `from sweep.runtime import ...`)")
    assert bad == []


def test_the_runtime_s_public_names_resolve():
    import sweep.runtime

    missing = [n for n in sweep.runtime.__all__ if not hasattr(sweep.runtime, n)]
    assert missing == []


def test_no_public_runtime_name_is_also_a_module_name():
    """`from sweep.runtime import x` gives the module x once it is imported, whatever
    `__getattr__` says: a function may not share its module's name."""
    from sweep.runtime import PUBLIC

    assert [n for n in PUBLIC if (REPO / "sweep" / "runtime" / f"{n}.py").exists()] == []


def test_old_entry_points_say_where_the_command_went():
    """`python -m` of a module that once was a command exits 2 naming the command now,
    never 0 having done nothing."""
    import subprocess
    import sys

    for argv, where in (
        (["-m", "nrfer.data.ferplus", "--root", "X", "--summary"], "nrfer data --dataset ferplus"),
        (["-m", "nrfer.cli", "sweep"], "the command line is `nrfer`"),
    ):
        p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and where in p.stderr, (argv, p.stderr)


def test_every_documented_mlflow_models_serve_has_the_venv_on_path():
    """`mlflow models serve --env-manager local` starts uvicorn by name: a command in the
    docs that runs it from the venv without activating it puts the venv's bin on PATH."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for doc in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            if "mlflow models serve" in line and not line.lstrip().startswith("#"):
                assert 'PATH="$PWD/.venv/bin:$PATH"' in line, (doc.name, line)
