"""`nrfer study`: a study's table (md / latex / csv, sweep.analysis.study), also while it
runs, and the seeds a claim needs.

    nrfer study table --sweep demo-study                 # also while it runs
    nrfer study table --sweep demo-study --format latex --out tables/
    nrfer study plan --sweep demo-study --delta 0.5      # seeds for 0.5 points

Everything comes from the MLflow store (each run's metrics and its predictions), so a table
is recomputed without retraining; the comparisons and their statistics are explained in
docs/studies.md.
"""

from __future__ import annotations

from pathlib import Path

from sweep.analysis.comparisons import plan
from sweep.analysis.study import Cell, study_table
from sweep.analysis.study_tables import (
    baseline_text,
    blocks,
    degradation_plot,
    render,
    write_tables,
)


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands.parsers import study_parser

    return run_command(study_parser(__doc__), run, argv)


def run(args) -> int:
    from mlflow.tracking import MlflowClient

    from sweep.tracking import check_tracking_uri, tracking_uri
    from sweep.tracking.sweep_run import find_sweep

    uri = check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    client = MlflowClient(uri)
    parent = find_sweep(client, args.sweep)
    spec, cells = study_table(client, parent, exclude=getattr(args, "exclude", None))
    if args.command == "plan":
        return print_plan(spec, cells, args)
    tables = render(spec, cells)
    print(tables[args.format], end="")
    if args.out:
        paths = write_tables(Path(args.out), tables, degradation_plot(spec, cells))
        print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def print_plan(spec, cells: list[Cell], args) -> int:
    """Seeds needed per baseline block and over the whole study, for --delta points."""
    everything = [x for c in cells for x in c.comparisons]
    if not everything:
        raise ValueError(f"study {spec.name} has no comparisons (no study.baseline or compare)")
    family = sum(bool(c.seeds) for c in everything)  # the verdict's Holm family: the table
    print(
        f"{spec.name}: seeds for a verdict (crossed seeds x faces test, Holm over the table's "
        f"{family} comparisons) to detect Δ={args.delta:g} points of test accuracy with "
        f"{100 * args.power:g}% power: each comparison at two-sided α={args.alpha:g}/{family}"
    )
    for base, comps in [*blocks(spec, cells), ({"all comparisons": ""}, everything)]:
        label = baseline_text(base) if "all comparisons" not in base else "all comparisons"
        p = plan(comps, args.delta / 100, args.power, args.alpha, family)
        if p is None:
            print(f"  vs {label}: no comparison with numbers yet")
            continue
        seed_sd = (
            f"{100 * p.seed_sd:.2f} pt ({p.df} df over {p.comparisons} comparisons)"
            if p.seed_sd is not None
            else "unmeasured (one seed per cell; the faces' floor is a lower bound)"
        )
        print(
            f"  vs {label}: {p.seeds_text}  (per-seed difference sd {seed_sd}; face-level sd "
            f"{100 * p.face_sd:.2f} pt; shared face part sd {100 * p.face_var**0.5:.2f} pt; "
            f"planned with sd {100 * p.sd:.2f} pt)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
