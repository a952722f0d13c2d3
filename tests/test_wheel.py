"""`pip install` of the wheel gives a working tool: the `nrfer` command, the shipped spaces
as package data, from any folder; and every command's --help without the heavy imports."""

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile

import pytest

from helpers import REPO

COMMANDS = (
    "sweep",
    "train",
    "best",
    "study",
    "evaluate",
    "predict",
    "data",
    "sr",
    "ui",
    "dashboard",
)


@pytest.mark.slow
def test_the_wheel_installs_a_nrfer_command_that_runs_from_an_empty_folder(tmp_path):
    # built from a copy of the tracked files: setuptools writes build/ beside its source
    src = tmp_path / "src"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            target.symlink_to(os.readlink(REPO / name))
        else:
            shutil.copy2(REPO / name, target)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
        ],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (wheel,) = wheels.glob("nrfer_sweep-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {"demo", "demo_study", "ferplus_vit", "paper_best", "paper_ablation"}
    assert {f"sweep/spaces/{s}.yaml" for s in shipped} <= names
    assert "nrfer/configs/demo.yaml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "nrfer = sweep.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()

    # a fresh venv holding the wheel only; its dependencies (torch, Ray, MLflow ...) are
    # this venv's, on its path (not as a site dir: this checkout's editable install stays out)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    own_site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if p.endswith("site-packages")]
    (tmp_path / "venv-deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(["cp", str(tmp_path / "venv-deps.pth"), own_site], check=True)
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import sweep, nrfer; print(sweep.__file__); print(nrfer.__file__)"],
        cwd=empty,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(w.startswith(own_site) for w in where), where  # the installed copy, not REPO

    nrfer = venv / "bin" / "nrfer"
    out = subprocess.run([str(nrfer), "--help"], cwd=empty, capture_output=True, text=True)
    assert out.returncode == 0 and all(f"  {c} " in out.stdout for c in COMMANDS), out.stdout
    out = subprocess.run(
        [str(nrfer), "sweep", "--space", "demo", "--dry-run"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"sweep 'demo' from {own_site}/sweep/spaces/demo.yaml" in out.stdout
    assert "models of 12 samples, each built and run on a dummy batch:" in out.stdout
    # the early stopping the run will use, as it will use it (adaptive, not FIFO or ASHA)
    assert (
        "early stopping: adaptive (the first 8 trials run their 4 epochs; then ASHA" in out.stdout
    )
    assert list(empty.iterdir()) == []  # a dry run writes nothing


HEAVY = ("torch", "ray", "mlflow", "optuna", "timm", "pydantic", "numpy")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_answers_without_the_heavy_imports(command):
    """`nrfer X --help` builds X's parser only: none of torch, Ray, MLflow ... is imported
    (bench/cli_help.py times them: well under a second each)."""
    code = (
        "import sys, json; from sweep.cli import main; "
        f"rc = main([{command!r}, '--help']); "
        f"print(json.dumps([rc, sorted(m for m in {HEAVY!r} if m in sys.modules)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    rc, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0 and heavy == [], (out.stdout[-2000:], out.stderr[-2000:])
    assert f"usage: nrfer {command}" in out.stdout


def test_the_dispatcher_names_an_unknown_command():
    from sweep.cli import main

    assert main(["swep"]) == 2


def test_the_light_parsers_choices_are_the_codes_own():
    from nrfer import parsers as commands
    from nrfer.data import SPLITS
    from nrfer.sr.apply import METHODS

    assert commands.SPLITS == tuple(SPLITS)
    assert commands.SR_METHODS == tuple(METHODS)
    assert commands.TTA == ("none", "flip")


def test_every_imported_package_is_declared():
    """Each third-party package nrfer/ and sweep/ import is a dependency in pyproject.toml."""
    import ast
    import re

    declared = set()
    text = (REPO / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("\n]", 1)[0]
    for line in deps.splitlines():
        m = re.match(r'\s*"([A-Za-z0-9_.-]+)', line)
        if m:
            declared.add(m.group(1).lower().replace("-", "_"))
    names = {"pillow": "PIL", "pyyaml": "yaml", "ray": "ray", "opencv_python_headless": "cv2"}
    importable = {names.get(d, d) for d in declared}
    found = set()
    for path in [*REPO.glob("nrfer/**/*.py"), *REPO.glob("sweep/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    third_party = {m for m in found if m not in sys.stdlib_module_names} - {"nrfer", "sweep"}
    optional = {"optuna_dashboard", "pynvml"}  # the dashboard and gpu extras
    assert third_party - importable - optional == set()
