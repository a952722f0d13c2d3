"""Run a sweep (Ray Tune + Optuna + ASHA) or a study (a grid x seeds), tracked in MLflow.

nrfer sweep --space demo                           # synthetic FER+, 8 tiny trials on a CPU
nrfer sweep --space ferplus_vit --address auto     # the paper's space on a Ray cluster
nrfer sweep --space demo --dry-run                 # validate and show the plan
nrfer sweep --space demo --resume                  # continue a killed sweep of that name
nrfer sweep --space demo --set budget.num_samples=4 --set fixed.train.epochs=2

(`python launch.py ...` in a checkout is the same command.)

Exit codes: 0 finished with at least one completed trial; 1 an unexpected failure; 2 input
refused (nothing started, nothing lost); 3 interrupted (continue with --resume); 4 finished
but every trial failed; 130 Ctrl+C before the sweep started.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
        "--set fixed.train.epochs=2, --set 'search.optim.lr={loguniform: [1e-4, 1e-2]}' "
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
    if args.dry_run:  # the check people script: missing data or weights fail it, as a run
        check_data(spec)
        check_pretrained(spec)
        from sweep.plan import print_plan

        print_plan(spec)
        return 0
    check_data(spec)
    check_pretrained(spec)
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


def check_data(spec) -> None:
    """Real FER+ files must be there before Ray starts."""
    from nrfer.data import DATASETS, DataFormatError
    from nrfer.data.ferplus import find_ferplus_files
    from nrfer.data.ferplus_folders import MS_FOLDERS, is_ferplus_tree

    dataset = spec.trial_config({}).data.dataset  # the data section with its defaults
    root = Path(spec.data.get("root") or "")
    if dataset == "ferplus_folders" or (dataset == "ferplus" and is_ferplus_tree(root)):
        missing = [d for d in MS_FOLDERS.values() if not (root / d / "label.csv").is_file()]
        if missing and not (dataset == "ferplus" and (root / "fer2013.csv").is_file()):
            raise DataFormatError(
                f"{spec.source}: data.root {str(root)!r}: Microsoft's FERPlus folders need "
                f"{', '.join(f'{d}/label.csv' for d in missing)}"
            )
    elif dataset == "ferplus":
        try:
            find_ferplus_files(spec.data.get("root") or "")
        except DataFormatError as e:
            raise DataFormatError(
                f"{spec.source}: data.root: {e}. Or try the embedded demo: "
                "python launch.py --space demo.yaml"
            ) from None
    elif DATASETS.props(dataset)["root"] == "folder" and not root.is_dir():
        raise DataFormatError(f"{spec.source}: data.root {spec.data.get('root')!r} is not a folder")
    for sr in spec.sr_settings():  # learned SR weights must exist before hours of caching
        if sr.method == "model" and not Path(sr.weights or "").is_file():
            raise DataFormatError(
                f"{spec.source}: data.sr.weights {sr.weights!r} does not exist "
                "(train ours with python -m nrfer.sr.train, or export DIC to TorchScript)"
            )


def check_pretrained(spec) -> None:
    """Weights must exist for every backbone the space can sample, before Ray starts."""
    from nrfer.data import DataFormatError
    from nrfer.models.pretrained import PretrainedError, resolve_weights

    pretrained = spec.fixed.get("model", {}).get("pretrained")
    if not pretrained:
        return
    searched = next((p for p in spec.params if p.key == "model.backbone"), None)
    backbones = searched.args if searched else [spec.trial_config({}).model.backbone]
    found, missing = [], []
    for backbone in backbones:
        try:
            found.append((backbone, resolve_weights(pretrained, backbone)))
        except PretrainedError as e:
            missing.append(str(e))
    if missing:
        raise DataFormatError(
            f"{spec.source}: fixed.model.pretrained: no weights for {len(missing)} of the "
            f"{len(backbones)} backbones this space can sample:\n  " + "\n  ".join(missing)
        )
    print("pretrained weights:")
    for backbone, path in found:
        print(f"  {backbone:40s} {path}")


if __name__ == "__main__":
    raise SystemExit(main())
