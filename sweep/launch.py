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
import sys


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--space",
        required=True,
        help="a shipped space by name (demo, demo_study, ferplus_vit, paper_best, "
        "paper_ablation) or a path to a space file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key of the space file, e.g. --set budget.num_samples=4, "
        "--set early_stopping.max_epochs=2, --set 'search.optim.lr={loguniform: [1e-4, 1e-2]}' "
        "(repeatable)",
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
    from sweep.resume import SweepFinished
    from sweep.space import SpaceError, load_space, resolve_space_path

    spec = load_space(args.space, args.overrides)
    if args.num_samples is not None and spec.is_study:
        raise SpaceError(
            f"--num-samples: {spec.source} is a study, which runs each of its cells once per "
            f"seed ({spec.budget.num_samples} runs)"
        )
    if args.num_samples is not None:
        spec.budget.num_samples = args.num_samples
    if args.max_concurrent is not None:
        spec.budget.max_concurrent = args.max_concurrent
    if args.name is not None:
        from sweep.sections import check_sweep_name

        try:
            spec.name = check_sweep_name(args.name)
        except ValueError as e:
            raise SpaceError(f"--name: {e}") from None
    if spec.budget.num_samples < 1 or spec.budget.max_concurrent < 1:
        raise SpaceError("--num-samples and --max-concurrent must be >= 1")
    # the checks people script: the dry run refuses what the run refuses, with its words
    from sweep.preflight import preflight, storage_dir

    preflight(spec, storage_dir(args.storage), args.tracking_uri)
    if args.dry_run:
        from sweep.plan import print_plan

        print_plan(spec)
        return 0
    from sweep.driver import run_sweep
    from sweep.report import print_leaderboard

    try:
        summary = run_sweep(
            spec,
            resolve_space_path(args.space),
            storage=args.storage,
            address=args.address,
            uri=args.tracking_uri,
            resume=args.resume or args.force_resume,
            force_resume=args.force_resume,
            warm_start=args.warm_start,
            optuna_storage=args.optuna_storage,
            verbose=2 if args.verbose else 0,
        )
    except SweepFinished as e:  # --resume of a finished sweep: nothing to do, not an error
        print(str(e))
        return 0
    print_leaderboard(summary, spec.metric)
    if "study_table" in summary:
        print(f"\n{summary['study_table']}")
        print(f"again, or while a study runs: nrfer study table --sweep {spec.name}")
    print_ui_pointer(summary, spec, args.tracking_uri)
    if summary.get("stopped_because"):  # said when it happened; again as the last line
        print(f"error: {summary['stopped_because']}", file=sys.stderr)
    return exit_code(summary)


def print_ui_pointer(summary: dict, spec, uri_option: str | None) -> None:
    """The exact command that shows this sweep in the MLflow UI, and the page it opens."""
    from sweep.ui import runs_link

    uri = summary["tracking_uri"]
    server = uri.startswith(("http://", "https://"))
    base = uri if server else "http://127.0.0.1:5000"
    order = "best_val_acc" if spec.metric == "val_acc" else spec.metric
    link = runs_link(base, summary["experiment_id"], summary["instance"], order, spec.mode == "min")
    if not server:
        store = f" --tracking-uri {uri_option}" if uri_option else ""
        print(f"MLflow UI: nrfer ui --sweep {spec.name}{store}")
    print(f"its trials: {link}")


# Exit codes scripts and schedulers can trust (README, "Exit codes").
EXIT_OK, EXIT_FAILURE, EXIT_REFUSED, EXIT_INTERRUPTED, EXIT_ALL_FAILED = 0, 1, 2, 3, 4


def exit_code(summary: dict) -> int:
    """0: the sweep finished with at least one completed trial; 3: interrupted (continue
    with --resume); 4: it finished but no trial completed (every one failed)."""
    if summary["unfinished"]:
        return EXIT_INTERRUPTED
    if summary["num_trials"] - summary["num_errors"] <= 0:
        print(
            f"error: sweep {summary['sweep']}: none of its {summary['num_trials']} trial(s) "
            "completed (the tracebacks are on their MLflow runs, artifact error/)",
            file=sys.stderr,
        )
        return EXIT_ALL_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
