"""Run a sweep (Ray Tune + Optuna + ASHA) or a study (a grid x seeds), tracked in MLflow.

nrfer sweep --space demo                           # synthetic FER+, 8 tiny trials on a CPU
nrfer sweep --space ferplus_vit --address auto     # the paper's space on a Ray cluster
nrfer sweep --space demo --dry-run                 # validate and show the plan
nrfer sweep --space demo --resume                  # continue a killed sweep of that name
nrfer sweep --space demo --set budget.num_samples=4 --set early_stopping.max_epochs=2

(`python launch.py ...` in a checkout is the same command.)

Exit codes: 0 finished with at least one completed trial; 1 an unexpected failure; 2 input
refused (nothing started, nothing lost); 3 interrupted (continue with --resume); 4 finished
but every trial failed; 130 Ctrl+C before the sweep started.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweep.runtime import SweepSummary


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    from nrfer.parsers import add_set

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--space",
        required=True,
        help="a shipped space by name (demo, demo_study, ferplus_vit, paper_best, "
        "paper_ablation) or a path to a space file",
    )
    add_set(
        parser,
        "budget.num_samples=4, --set early_stopping.max_epochs=2, "
        "--set 'search.optim.lr={loguniform: [1e-4, 1e-2]}'",
        what="one key of the space file",
    )
    parser.add_argument("--num-samples", type=int, help="override budget.num_samples")
    parser.add_argument("--max-concurrent", type=int, help="override budget.max_concurrent")
    parser.add_argument(
        "--sweep",
        "--name",
        dest="name",
        help="the sweep's name (MLflow experiment, storage folder); default: the space's name",
    )
    parser.add_argument(
        "--address", help="join an existing Ray cluster (e.g. auto or 127.0.0.1:6379)"
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    parser.add_argument(
        "--storage", help="where Ray Tune keeps trial results and checkpoints (default runs/sweeps)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the sweep of this name")
    parser.add_argument(
        "--force-resume",
        action="store_true",
        help="with --resume: continue the sweep as it was started even if the space file or "
        "options changed (the changes are ignored)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan; train nothing"
    )
    parser.add_argument(
        "--warm-start",
        action="append",
        metavar="SWEEP",
        help="start the searcher from the finished and pruned trials of an earlier sweep "
        "(repeatable; parameters outside this space are dropped)",
    )
    parser.add_argument(
        "--optuna-storage",
        help="the Optuna study's RDB URL (default: optuna.db next to a SQLite MLflow store, "
        "else in --storage)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="Ray Tune's own trial tables and logs as well"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command

    return run_command(build_parser(), _launch, argv)


def _launch(args) -> int:
    # the first line, before the imports that take seconds (Ray, torch, MLflow)
    what = "resuming" if args.resume or args.force_resume else "dry run of" if args.dry_run else ""
    print(f"nrfer sweep: {what + ' ' if what else ''}{args.space}", flush=True)
    from sweep.runtime import launched, phase

    since = launched()
    with phase("space, data, weights, storage and store checked", since) as found:
        spec, uri = _checked_spec(args, found)
    if args.dry_run:
        from sweep.commands.plan import print_plan

        print_plan(spec)
        return 0
    from sweep.analysis.report import print_leaderboard, print_pareto
    from sweep.runtime import SweepFinished, run_sweep
    from sweep.spec.space import resolve_space_path

    try:
        summary = run_sweep(
            spec,
            resolve_space_path(args.space),
            storage=args.storage,
            address=args.address,
            uri=uri,
            uri_checked=True,  # by the preflight: a server is not probed twice
            resume=args.resume or args.force_resume,
            force_resume=args.force_resume,
            warm_start=args.warm_start,
            optuna_storage=args.optuna_storage,
            verbose=2 if args.verbose else 0,
            since=since,
        )
    except SweepFinished as e:  # --resume of a finished sweep: nothing to do, not an error
        print(str(e))
        return 0
    print_leaderboard(summary, spec.metric)
    if spec.multi_objective:
        print_pareto(summary, spec.senses)
    if summary.study_table:
        print(f"\n{summary.study_table}")
        print(f"again, or while a study runs: nrfer study table --sweep {spec.name}")
    print_ui_pointer(summary, spec, args.tracking_uri)
    if summary.stopped_because:  # said when it happened; again as the last line
        print(f"error: {summary.stopped_because}", file=sys.stderr)
    return exit_code(summary)


def _checked_spec(args, found: list[str]):
    """The space with the options applied, through the preflight the run and the dry run
    share (each refusal one line naming the file, key or folder), and the tracking URI the
    preflight resolved and checked."""
    from sweep.runtime import preflight, storage_dir
    from sweep.spec.space import SpaceError, load_space

    spec = load_space(args.space, args.overrides)
    if args.num_samples is not None and spec.is_study:
        raise SpaceError(
            f"--num-samples: {spec.source} is a study, which runs each of its cells once per "
            f"seed ({spec.budget.num_samples} runs)"
        )
    # the options are overrides of the space file, validated with it (their errors named
    # by the option)
    options = {
        "--num-samples": ("budget.num_samples", args.num_samples),
        "--max-concurrent": ("budget.max_concurrent", args.max_concurrent),
        "--name": ("name", args.name),
    }
    given = {flag: (key, v) for flag, (key, v) in options.items() if v is not None}
    if given:
        sets = [f"{key}={json.dumps(v)}" for key, v in given.values()]
        try:
            spec = load_space(args.space, [*args.overrides, *sets])
        except SpaceError as e:
            raise SpaceError(option_errors(str(e), given)) from None
    # the checks people script: the dry run refuses what the run refuses, with its words
    uri = preflight(spec, storage_dir(args.storage), args.tracking_uri)
    found.append(f"{spec.name}, {spec.budget.num_samples} trials")
    return spec, uri


def option_errors(text: str, given: dict[str, tuple[str, object]]) -> str:
    """A space's validation errors with each option's key named as the option
    (`<file> + --set: budget.num_samples: must be >= 1` -> `--num-samples: must be >= 1`)."""
    lines = []
    for line in text.splitlines():
        for flag, (key, _) in given.items():
            if f": {key}: " in line:
                line = f"{flag}: " + line.split(f": {key}: ", 1)[1]
        lines.append(line)
    return "\n".join(lines)


def print_ui_pointer(summary: SweepSummary, spec, uri_option: str | None) -> None:
    """The exact command that shows this sweep in the MLflow UI, and the page it opens."""
    from sweep.analysis.html_report import ui_base
    from sweep.tracking.ui import runs_link, view_key

    uri = summary.tracking_uri
    link = runs_link(ui_base(uri), summary.experiment_id, view_key(summary.instance))
    if ui_base(uri) != uri:  # a local store: the UI is `nrfer ui`'s
        store = f" --tracking-uri {uri_option}" if uri_option else ""
        print(f"MLflow UI: nrfer ui --sweep {spec.name}{store}")
    print(f"its trials: {link}")


# Exit codes scripts and schedulers can trust (README, "Exit codes").
EXIT_OK, EXIT_FAILURE, EXIT_REFUSED, EXIT_INTERRUPTED, EXIT_ALL_FAILED = 0, 1, 2, 3, 4


def exit_code(summary: SweepSummary) -> int:
    """0: the sweep finished with at least one completed trial; 3: interrupted (continue
    with --resume); 4: it finished but no trial completed (every one failed)."""
    if summary.unfinished:
        return EXIT_INTERRUPTED
    if summary.num_trials - summary.num_errors <= 0:
        print(
            f"error: sweep {summary.sweep}: none of its {summary.num_trials} trial(s) "
            "completed (the tracebacks are on their MLflow runs, artifact error/)",
            file=sys.stderr,
        )
        return EXIT_ALL_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
