"""`nrfer`: one command with subcommands (the console script of `pip install .`).

Each subcommand is one of the project's commands (`python -m ...` runs the same one); its
parser is built without importing torch, Ray or MLflow, so `nrfer X --help` answers at
once, and the command's code is imported only to run it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    summary: str
    parser: Callable  # () -> argparse.ArgumentParser (light)
    run: Callable  # (argv) -> exit code (imports the command's code)
    module: str  # the same command as `python -m <module>`


def _run(module: str, function: str = "main") -> Callable:
    def run(argv: list[str]) -> int:
        import importlib

        return getattr(importlib.import_module(module), function)(argv)

    return run


def docstring(module: str) -> str | None:
    """A module's docstring, read from its file (importing it would load torch or MLflow)."""
    import ast
    import importlib.util
    from pathlib import Path

    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # not the module's: that imports its packages
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent.joinpath(*rest)
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not path.is_file():
        return None
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))


def _parser(module: str, factory: str, doc_of: str, **kwargs) -> Callable:
    def build():
        import importlib

        return getattr(importlib.import_module(module), factory)(docstring(doc_of), **kwargs)

    return build


COMMANDS: dict[str, Command] = {
    "sweep": Command(
        "run or resume a sweep or a study (Ray Tune + Optuna + ASHA, tracked in MLflow)",
        lambda: __import__("sweep.commands.sweep", fromlist=["x"]).build_parser(),
        _run("sweep.commands.sweep"),
        "launch.py",
    ),
    "train": Command(
        "train one model from a trial config (best-by-val checkpoint, test once)",
        _parser("nrfer.parsers", "train_parser", "nrfer.train"),
        _run("nrfer.train"),
        "nrfer.train",
    ),
    "best": Command(
        "reproduce-best: retrain a sweep's best config with seeds, test once, register it",
        _parser("sweep.commands.parsers", "best_parser", "sweep.commands.best"),
        _run("sweep.commands.best"),
        "sweep.commands.best",
    ),
    "study": Command(
        "a study's table with its comparisons (md / latex / csv), also while it runs; the seeds a claim needs (plan)",
        _parser("sweep.commands.parsers", "study_parser", "sweep.commands.study"),
        _run("sweep.commands.study"),
        "sweep.commands.study",
    ),
    "report": Command(
        "a sweep's interactive report (offline HTML): history, curves, importance, leaderboard",
        _parser("sweep.commands.parsers", "report_parser", "sweep.commands.report"),
        _run("sweep.commands.report"),
        "sweep.commands.report",
    ),
    "evaluate": Command(
        "evaluate a model (best.pt or models:/NAME@champion) on a dataset split, degraded too",
        _parser("nrfer.parsers", "evaluate_parser", "sweep.commands.evaluate", mlflow=True),
        _run("sweep.commands.evaluate"),
        "sweep.commands.evaluate",
    ),
    "export": Command(
        "export a model to ONNX (one graph, dynamic batch), checked against PyTorch",
        _parser("nrfer.parsers", "export_parser", "sweep.commands.export", mlflow=True),
        _run("sweep.commands.export"),
        "sweep.commands.export",
    ),
    "predict": Command(
        "predict the expression of face images, or of each face found in photos",
        _parser("nrfer.parsers", "predict_parser", "sweep.commands.predict", mlflow=True),
        _run("sweep.commands.predict"),
        "sweep.commands.predict",
    ),
    "data": Command(
        "read a dataset and print its split sizes and class counts",
        _parser("nrfer.parsers", "data_parser", "nrfer.data.__main__"),
        _run("nrfer.data.__main__"),
        "nrfer.data",
    ),
    "sr": Command(
        "super-resolve a dataset into an SR cache (bicubic, lanczos, a model)",
        _parser("nrfer.parsers", "sr_parser", "nrfer.sr.__main__"),
        _run("nrfer.sr.__main__"),
        "nrfer.sr",
    ),
    "weights": Command(
        "fetch timm's pretrained weights for a space's backbones into the local cache, once",
        _parser("sweep.commands.parsers", "weights_parser", "sweep.commands.weights"),
        _run("sweep.commands.weights"),
        "sweep.commands.weights",
    ),
    "ui": Command(
        "the MLflow UI on the sweep's store, opened on its trials",
        _parser("sweep.commands.parsers", "ui_parser", "sweep.commands.ui"),
        _run("sweep.commands.ui"),
        "sweep.commands.ui",
    ),
    "dashboard": Command(
        "optuna-dashboard on the sweeps' Optuna studies",
        _parser("sweep.commands.parsers", "dashboard_parser", "sweep.commands.dashboard"),
        _run("sweep.commands.dashboard"),
        "sweep.commands.dashboard",
    ),
}


def overview() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: nrfer COMMAND [options]   (nrfer COMMAND --help for its options)",
        "",
        "Sweeps and studies of FER models with Vision Transformers and a Neural Resizer.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items()),
        "",
        "start here:  nrfer sweep --space demo      (8 tiny trials on synthetic FER+, CPU)",
        "             nrfer ui                      (the MLflow UI on them)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(overview())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS.get(name)
    if command is None:
        from nrfer.registry import suggest

        print(f"error: unknown command {name!r}; {suggest(name, list(COMMANDS))}", file=sys.stderr)
        return 2
    if name == "data" and rest[:1] == ["audit"]:  # a subcommand with its own parser and help
        sys.argv[0] = "nrfer data audit"
        return _run("nrfer.data.audit_cli")(rest[1:])
    sys.argv[0] = f"nrfer {name}"  # argparse's usage and error lines name this command
    if "-h" in rest or "--help" in rest:  # help from the light parser alone
        parser = command.parser()
        parser.prog = f"nrfer {name}"
        try:  # a subcommand's own help (nrfer study plan --help) where it has one
            parser.parse_args(rest)
        except SystemExit as e:
            return int(e.code or 0)
        parser.print_help()
        return 0
    return command.run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
