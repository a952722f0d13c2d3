"""A study's table: a row per cell (val and test mean +- std over seeds, mean class
accuracy, macro-F1, extra evaluation sets), each cell compared with its baseline cell, and
the paper's layout (rows: one axis; columns: the others) as Markdown, LaTeX and CSV.

    python -m sweep.study table --sweep demo-study                 # also while it runs
    python -m sweep.study table --sweep demo-study --format latex --out tables/

Everything comes from the MLflow store (each run's metrics and its `predictions/test.npz`),
so a table is recomputed without retraining. Significance against the baseline: the
difference of mean test accuracy with a 95% Welch t-interval over seeds, and McNemar's
exact test on the paired per-image test predictions, per seed and pooled over seeds
(`sweep.significance`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.significance import disagreements, mcnemar_exact, mean_std, welch_interval

CELL_TAG, SEED_TAG = "nrfer.study.cell", "nrfer.study.seed"
FORMATS = ("md", "latex", "csv")
PREDICTIONS = "predictions/test.npz"


def cell_key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


@dataclass
class Cell:
    """One cell of the grid and what its runs gave: `values[metric]` per finished seed."""

    cell: dict[str, Any]
    expected: int  # seeds it should have
    seeds: list[int] = field(default_factory=list)  # finished with a test result
    run_ids: dict[int, str] = field(default_factory=dict)  # seed -> run id (finished)
    values: dict[str, list[float]] = field(default_factory=dict)
    failed: int = 0
    running: int = 0
    stopped: int = 0  # ended before their last epoch (early stopping): no test
    baseline: dict[str, Any] | None = None
    diff: tuple[float, float, float] | None = None  # test mean difference, 95% CI
    mcnemar: dict[str, Any] | None = None  # {"pooled": p, "b": .., "c": .., "seeds": {s: p}}

    @property
    def n(self) -> int:
        return len(self.seeds)

    def stat(self, metric: str) -> tuple[float, float]:
        return mean_std(self.values.get(metric, []))

    @property
    def status(self) -> str:
        """ok, or what keeps the cell from its full count of seeds."""
        parts = []
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.stopped:
            parts.append(f"{self.stopped} stopped early")
        if self.running:
            parts.append(f"{self.running} running")
        missing = self.expected - self.n - self.failed - self.stopped - self.running
        if missing > 0:
            parts.append(f"{missing} not run")
        return ", ".join(parts) or "ok"

    def shown(self, metric: str) -> str:
        """'mean +- std' in percent, or why there is no number."""
        if self.n == 0:
            if self.failed:
                return "failed"
            return "running" if self.running else "not run"
        m, s = self.stat(metric)
        return f"{100 * m:.2f} ± {100 * s:.2f}"


METRICS = {  # table column -> the run's metric
    "val": "best_val_acc",
    "test": "test_acc",
    "mean class acc": "test_mean_class_acc",
    "macro-F1": "test_macro_f1",
}


def collect(spec, runs: list) -> list[Cell]:
    """`runs` (MLflow runs of the study) grouped into `spec`'s cells, in grid order."""
    seeds = spec.study.seeds
    cells = {cell_key(c): Cell(c, len(seeds)) for c in spec.cells()}
    extra = [f"eval_{ev.name}_{k}" for ev in spec.study.eval_sets for k in ("acc",)]
    for run in runs:
        cell = cells.get(run.data.tags.get(CELL_TAG, ""))
        if cell is None:
            continue
        status, metrics = run.info.status, run.data.metrics
        if status == "RUNNING":
            cell.running += 1
        elif status != "FINISHED" or run.data.tags.get("nrfer.diverged") == "true":
            cell.failed += 1
        elif "test_acc" not in metrics:
            cell.stopped += 1
        else:
            seed = int(run.data.tags.get(SEED_TAG, -1))
            cell.seeds.append(seed)
            cell.run_ids[seed] = run.info.run_id
            for key in (*METRICS.values(), *extra):
                if key in metrics:
                    cell.values.setdefault(key, []).append(float(metrics[key]))
    out = list(cells.values())
    for c in out:  # values in seed order, so per-seed pairs line up
        order = sorted(range(c.n), key=lambda i: c.seeds[i])
        c.values = {k: [v[i] for i in order] for k, v in c.values.items()}
        c.seeds = sorted(c.seeds)
    return out


def compare(spec, cells: list[Cell], predictions) -> None:
    """Each cell against its baseline cell: the difference of mean test accuracy (95%
    Welch t-interval over seeds) and McNemar's exact test per shared seed and pooled.
    `predictions(run_id)` -> {"probs", "labels"} of that run's test split."""
    by_key = {cell_key(c.cell): c for c in cells}
    for c in cells:
        base_cell = spec.baseline_of(c.cell)
        if base_cell is None:
            continue
        c.baseline = base_cell
        base = by_key.get(cell_key(base_cell))
        if base is None or c.n == 0 or base.n == 0:
            continue
        c.diff = welch_interval(c.values["test_acc"], base.values["test_acc"])
        shared = [s for s in c.seeds if s in base.run_ids]
        per_seed, sign, b_all, c_all = {}, {}, 0, 0
        for seed in shared:
            mine, theirs = predictions(c.run_ids[seed]), predictions(base.run_ids[seed])
            if mine is None or theirs is None:
                continue
            if (
                len(mine["labels"]) != len(theirs["labels"])
                or (mine["labels"] != theirs["labels"]).any()
            ):
                raise ValueError(
                    f"seed {seed}: cell {c.cell} and its baseline were tested on different "
                    "faces; their predictions cannot be paired"
                )
            b, cc = disagreements(
                mine["probs"].argmax(1), theirs["probs"].argmax(1), mine["labels"]
            )
            per_seed[seed] = mcnemar_exact(b, cc)
            sign[seed] = "cell" if b > cc else "base" if b < cc else "tie"
            b_all, c_all = b_all + b, c_all + cc
        if per_seed:
            c.mcnemar = {
                "pooled": mcnemar_exact(b_all, c_all),
                "b": b_all,
                "c": c_all,
                "seeds": per_seed,
                "favours": sign,  # per seed: who is right on more of the disputed faces
            }


# --- rendering ----------------------------------------------------------------------------


def short(key: str) -> str:
    """A parameter's column name: its last two parts (model.resizer.n -> resizer.n)."""
    return ".".join(key.split(".")[-2:])


def value_text(v: Any) -> str:
    return "–" if v is None else ("on" if v is True else "off" if v is False else str(v))


def significance_text(c: Cell) -> tuple[str, str]:
    """('+0.60 (95% CI -0.10..+1.30)', 'p=0.04 (seeds 0.1 cell, 0.21 cell)') in points
    (after each seed's p, who was right on more of the faces the two disagree on: the
    cell, the baseline, or a tie), or '' for a baseline cell or one without the numbers."""
    if c.baseline is None:
        return "baseline", ""
    diff = ""
    if c.diff is not None:
        d, lo, hi = (100 * x for x in c.diff)
        diff = f"{d:+.2f} (95% CI {lo:+.2f}..{hi:+.2f})"
    elif c.n:
        diff = "n/a (< 2 seeds)"
    p = ""
    if c.mcnemar:
        signs = c.mcnemar["favours"]
        seeds = ", ".join(f"{v:.2g} {signs[s]}" for s, v in c.mcnemar["seeds"].items())
        p = f"p={c.mcnemar['pooled']:.2g} (seeds {seeds})"
    return diff, p


def axes(spec) -> list[str]:
    return [p.key for p in spec.params]


def cell_rows(spec, cells: list[Cell]) -> tuple[list[str], list[list[str]]]:
    """The per-cell table as header + rows of text."""
    evals = [ev.name for ev in spec.study.eval_sets]
    header = [short(k) for k in axes(spec)]
    header += ["n", *METRICS, *evals, "Δ test vs baseline", "McNemar", "status"]
    rows = []
    for c in cells:
        diff, p = significance_text(c)
        row = [value_text(c.cell.get(k)) for k in axes(spec)]
        row += [f"{c.n}/{c.expected}", *(c.shown(m) for m in METRICS.values())]
        row += [c.shown(f"eval_{e}_acc") for e in evals]
        rows.append(row + [diff, p, c.status])
    return header, rows


def paper_layout(spec, cells: list[Cell]) -> tuple[list[str], list[list[str]]]:
    """Test accuracy laid out as the paper: a row per value of study.rows, a column per
    combination of the other axes (in grid order)."""
    rows_key = spec.study.rows
    columns: list[str] = []
    table: dict[str, dict[str, str]] = {}
    for c in cells:
        col = (
            ", ".join(f"{short(k)}={value_text(v)}" for k, v in c.cell.items() if k != rows_key)
            or "test"
        )
        if col not in columns:
            columns.append(col)
        table.setdefault(value_text(c.cell.get(rows_key)), {})[col] = c.shown("test_acc")
    header = [short(rows_key), *columns]
    return header, [[r, *(vals.get(col, "–") for col in columns)] for r, vals in table.items()]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def latex(header: list[str], rows: list[list[str]], caption: str) -> str:
    def esc(text: str) -> str:
        for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&")):
            text = text.replace(a, b)
        return text.replace("±", "$\\pm$").replace("–", "--")

    spec = "l" + "c" * (len(header) - 1)
    body = [" & ".join(esc(h) for h in header) + " \\\\", "\\midrule"]
    body += [" & ".join(esc(v) for v in r) + " \\\\" for r in rows]
    return "\n".join(
        [
            "\\begin{table}[t]",
            "\\centering",
            f"\\caption{{{esc(caption)}}}",
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            *body,
            "\\bottomrule",
            "\\end{tabular}",
            "\\end{table}",
        ]
    )


def csv_text(spec, cells: list[Cell]) -> str:
    """Every number of every cell, one row per cell (fractions, not percent)."""
    evals = [ev.name for ev in spec.study.eval_sets]
    out = io.StringIO()
    w = csv.writer(out)
    stats = [*METRICS.values(), *(f"eval_{e}_acc" for e in evals)]
    w.writerow(
        [
            *axes(spec),
            "n_seeds",
            "seeds",
            *(f"{m}_{s}" for m in stats for s in ("mean", "std")),
            "diff_test_acc",
            "diff_ci_low",
            "diff_ci_high",
            "mcnemar_p_pooled",
            "mcnemar_b",
            "mcnemar_c",
            "mcnemar_p_per_seed",
            "failed",
            "status",
        ]
    )
    for c in cells:
        nums = [x for m in stats for x in c.stat(m)]
        d = c.diff or (math.nan, math.nan, math.nan)
        mc = c.mcnemar or {}
        w.writerow(
            [
                *(c.cell.get(k, "") for k in axes(spec)),
                c.n,
                ";".join(map(str, c.seeds)),
                *("" if math.isnan(x) else f"{x:.6f}" for x in nums),
                *("" if math.isnan(x) else f"{x:.6f}" for x in d),
                "" if not mc else f"{mc['pooled']:.6g}",
                mc.get("b", ""),
                mc.get("c", ""),
                ";".join(f"{s}:{p:.6g}" for s, p in mc.get("seeds", {}).items()),
                c.failed,
                c.status,
            ]
        )
    return out.getvalue()


def render(spec, cells: list[Cell]) -> dict[str, str]:
    """The table in every format: md (per-cell table, then the paper layout), latex (the
    paper layout, booktabs), csv (every number of every cell)."""
    seeds = len(spec.study.seeds)
    caption = (
        f"{spec.name}: test accuracy (%), mean ± std over {seeds} seeds; "
        "epoch chosen on validation, test evaluated once"
    )
    per_cell = markdown(*cell_rows(spec, cells))
    paper = paper_layout(spec, cells)
    md = f"### {caption}\n\n{per_cell}\n\n#### By {short(spec.study.rows)}\n\n{markdown(*paper)}\n"
    return {"md": md, "latex": latex(*paper, caption) + "\n", "csv": csv_text(spec, cells)}


def write_tables(out: Path, tables: dict[str, str]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    names = {"md": "study_table.md", "latex": "study_table.tex", "csv": "study_table.csv"}
    paths = {}
    for fmt, text in tables.items():
        paths[fmt] = out / names[fmt]
        paths[fmt].write_text(text, encoding="utf-8")
    return paths


# --- from the MLflow store ----------------------------------------------------------------


def run_predictions(client, folder: Path):
    """run id -> its test predictions (None when the run has none), downloaded once."""
    from nrfer.evaluate import load_predictions

    def get(run_id: str):
        try:
            path = client.download_artifacts(run_id, PREDICTIONS, str(folder))
        except Exception:  # an older run, or one whose upload failed
            return None
        return load_predictions(path)

    return get


def sweep_spec(client, run_id: str) -> dict:
    """The spec a sweep was started with, from its parent run: the JSON copy (file order,
    which a study's grid follows), else the YAML one of sweeps logged before it existed."""
    import yaml

    from sweep.tracking.sweep_run import SPEC_JSON

    try:
        return json.loads(Path(client.download_artifacts(run_id, SPEC_JSON)).read_text())
    except Exception:  # an older sweep: its keys sorted
        path = client.download_artifacts(run_id, "space/resolved_spec.yaml")
        return yaml.safe_load(Path(path).read_text())


def study_table(client, parent, spec=None) -> tuple[Any, list[Cell]]:
    """The study of sweep run `parent`: its spec (as it was started) and its cells."""
    from sweep.space import parse_space
    from sweep.tracking import INSTANCE, ROLE
    from sweep.tracking.store import find_runs

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file
    if spec is None:
        raw = sweep_spec(client, parent.info.run_id)
        spec = parse_space(raw, f"sweep {parent.data.tags.get('mlflow.runName', '')}")
    if not spec.is_study:
        raise ValueError(
            f"sweep {spec.name} is a search (searcher: {spec.searcher}), not a study; its "
            "leaderboard is in the parent run's report"
        )
    tags = {INSTANCE: parent.data.tags[INSTANCE], ROLE: "trial"}
    runs = find_runs(client, parent.info.experiment_id, tags)
    cells = collect(spec, runs)
    with tempfile.TemporaryDirectory(prefix="nrfer-study-") as tmp:
        compare(spec, cells, run_predictions(client, Path(tmp)))
    return spec, cells


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands import study_parser

    return run_command(study_parser(__doc__), print_table, argv)


def print_table(args) -> int:
    from mlflow.tracking import MlflowClient

    from sweep.reproduce import find_sweep
    from sweep.tracking import check_tracking_uri, tracking_uri

    uri = check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    client = MlflowClient(uri)
    parent = find_sweep(client, args.sweep)
    spec, cells = study_table(client, parent)
    tables = render(spec, cells)
    print(tables[args.format], end="")
    if args.out:
        paths = write_tables(Path(args.out), tables)
        print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
