"""A study's cells: each cell's runs (one per seed) with their metrics, gathered from the
MLflow store, and the comparisons of each cell with its baseline (`study_table`). Rendered
as Markdown, LaTeX and CSV by sweep.analysis.study_tables (the command: sweep.commands.study).

Everything comes from the MLflow store (each run's metrics and its `predictions/test.npz`),
so a table is recomputed without retraining. The comparisons (`sweep.analysis.comparisons`): the
difference of mean test accuracy with its crossed seeds x faces 95% interval and p, Holm
and Benjamini-Hochberg adjusted over the table, and per-seed McNemar as a secondary column.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.analysis.comparisons import (
    Comparison,
    cell_key,
    compare_cells,
)
from sweep.analysis.significance import mean_std

CELL_TAG, SEED_TAG = "nrfer.study.cell", "nrfer.study.seed"
FORMATS = ("md", "latex", "csv", "compare-csv")
PREDICTIONS = "predictions/test.npz"


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
    interrupted: int = 0  # the sweep stopped before they ended: --resume continues them
    stopped: int = 0  # ended before their last epoch (early stopping): no test
    leaked: int = 0  # test faces left out of "test w/o leaked" (study.exclude_leaked)
    comparisons: list[Comparison] = field(default_factory=list)  # this cell vs a baseline
    # the same, on the test faces under each degradation (its label -> comparisons)
    degraded: dict[str, list[Comparison]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.seeds)

    def stat(self, metric: str) -> tuple[float, float]:
        """Mean and sample std over seeds (std nan under 2 seeds: no spread)."""
        return mean_std(self.values.get(metric, []))

    @property
    def status(self) -> str:
        """ok, or what keeps the cell from its full count of seeds."""
        parts = []
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted (resume with --resume)")
        if self.stopped:
            parts.append(f"{self.stopped} stopped early")
        if self.running:
            parts.append(f"{self.running} running")
        missing = (
            self.expected - self.n - self.failed - self.stopped - self.running - self.interrupted
        )
        if missing > 0:
            parts.append(f"{missing} not run")
        return ", ".join(parts) or "ok"

    def shown(self, metric: str, scale: float = 100, digits: int = 2) -> str:
        """'mean ± std' (percent by default); one seed: its value and 'n=1', no spread; a
        metric the runs lack: '–'; no finished run: why."""
        if self.n == 0:
            for word, count in (("failed", self.failed), ("interrupted", self.interrupted)):
                if count:
                    return word
            return "running" if self.running else "not run"
        if not self.values.get(metric):
            return "–"
        m, s = self.stat(metric)
        if math.isnan(s):
            return f"{scale * m:.{digits}f} (n=1)"
        return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


METRICS = {  # table column -> the run's metric
    "val": "best_val_acc",
    "test": "test_acc",
    "mean class acc": "test_mean_class_acc",
    "macro-F1": "test_macro_f1",
}
UNLEAKED = "test_acc_unleaked"  # test accuracy without the faces an audit found leaked
# calibration columns: (column, metric, scale, digits); vote TV only where the data has votes
CALIBRATION = (
    ("ECE %", "test_ece", 100, 2),
    ("NLL", "test_nll", 1, 3),
    ("vote TV", "test_vote_tv", 1, 3),
)


def collect(spec, runs: list, driver_done: bool = False) -> list[Cell]:
    """`runs` (MLflow runs of the study) grouped into `spec`'s cells, in grid order. A run
    the sweep's interruption closed (MLflow KILLED) is interrupted, not failed; with
    `driver_done` (the driver's own table, after Tune returned) so is one still RUNNING."""
    seeds = spec.study.seeds
    cells = {cell_key(c): Cell(c, len(seeds)) for c in spec.cells()}
    extra = [f"eval_{ev.name}_{k}" for ev in spec.study.eval_sets for k in ("acc",)]
    extra += [degraded_metric(d) for d in spec.study.degradations]
    keys = (*METRICS.values(), *(m for _, m, _, _ in CALIBRATION), *extra)
    for run in runs:
        cell = cells.get(run.data.tags.get(CELL_TAG, ""))
        if cell is None:
            continue
        status, metrics = run.info.status, run.data.metrics
        if status == "KILLED" or (status == "RUNNING" and driver_done):
            cell.interrupted += 1
        elif status == "RUNNING":
            cell.running += 1
        elif status != "FINISHED" or run.data.tags.get("nrfer.diverged") == "true":
            cell.failed += 1
        elif "test_acc" not in metrics:
            cell.stopped += 1
        else:
            seed = int(run.data.tags.get(SEED_TAG, -1))
            cell.seeds.append(seed)
            cell.run_ids[seed] = run.info.run_id
            for key in keys:
                if key in metrics:
                    cell.values.setdefault(key, []).append(float(metrics[key]))
    out = list(cells.values())
    for c in out:  # values in seed order, so per-seed pairs line up
        order = sorted(range(c.n), key=lambda i: c.seeds[i])
        c.values = {k: [v[i] for i in order] if len(v) == c.n else v for k, v in c.values.items()}
        c.seeds = sorted(c.seeds)
    return out


def degraded_metric(d, key: str = "acc") -> str:
    """The run metric of a degradation (nrfer.degrade.Degradation): deg_lowres_12_acc."""
    return f"deg_{d.key}_{key}"


# --- from the MLflow store ----------------------------------------------------------------


def run_predictions(client, folder: Path, artifact: str = PREDICTIONS):
    """run id -> its test predictions (None when the run has none), downloaded once;
    `artifact`: another predictions file of the run (predictions/deg_lowres_12.npz)."""
    from nrfer.evaluate import load_predictions

    def get(run_id: str):
        try:
            path = client.download_artifacts(run_id, artifact, str(folder))
        except Exception:  # an older run, or one whose upload failed
            return None
        return load_predictions(path)

    return get


def sweep_spec(client, run_id: str, folder: Path) -> dict:
    """The spec a sweep was started with, from its parent run (downloaded into `folder`):
    the JSON copy (file order, which a study's grid follows), else the YAML one of sweeps
    logged before it existed."""
    import yaml

    from sweep.tracking.sweep_run import SPEC_JSON

    try:
        return json.loads(
            Path(client.download_artifacts(run_id, SPEC_JSON, str(folder))).read_text()
        )
    except Exception:  # an older sweep: its keys sorted
        path = client.download_artifacts(run_id, "space/resolved_spec.yaml", str(folder))
        return yaml.safe_load(Path(path).read_text())


def unleaked(spec, cells: list[Cell], predictions, exclude: str) -> None:
    """Each finished run's test accuracy without the test faces audit.csv `exclude` finds a
    twin of in train or val (checked against the study's data as read now), from the run's
    own test predictions: cell.values[UNLEAKED], and cell.leaked faces left out."""
    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.data.audit import accuracy_without, leaked_in

    data = load_data(make_config({"data": spec.data}, spec.source).data, sr=False)
    leaked = leaked_in(exclude, "test", data.test.images)
    for c in cells:
        c.leaked = len(leaked)
        for seed in c.seeds:
            found = predictions(c.run_ids[seed])
            if found is None or len(found["labels"]) != len(data.test):
                continue  # an older run without predictions, or of other data
            accuracy = accuracy_without(found["probs"], found["labels"], leaked)
            c.values.setdefault(UNLEAKED, []).append(accuracy)


def study_table(
    client, parent, spec=None, driver_done: bool = False, exclude: str | None = None
) -> tuple[Any, list[Cell]]:
    """The study of sweep run `parent`: its spec (as it was started) and its cells, each
    with its comparisons (`driver_done`: see `collect`); `exclude` (else the spec's
    study.exclude_leaked): an audit.csv, for test accuracy without leaked faces too."""
    from sweep.spec.space import parse_space
    from sweep.tracking import INSTANCE, ROLE
    from sweep.tracking.store import find_runs

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file
    with tempfile.TemporaryDirectory(prefix="nrfer-study-") as tmp:
        if spec is None:
            raw = sweep_spec(client, parent.info.run_id, Path(tmp))
            spec = parse_space(raw, f"sweep {parent.data.tags.get('mlflow.runName', '')}")
        if not spec.is_study:
            raise ValueError(
                f"sweep {spec.name} is a search (searcher: {spec.searcher}), not a study; its "
                "leaderboard is in the parent run's report"
            )
        tags = {INSTANCE: parent.data.tags[INSTANCE], ROLE: "trial"}
        runs = find_runs(client, parent.info.experiment_id, tags)
        cells = collect(spec, runs, driver_done)
        compare_cells(spec, cells, run_predictions(client, Path(tmp)))
        predictions = run_predictions(client, Path(tmp))
        if exclude:
            unleaked(spec, cells, predictions, exclude)
        elif spec.study.exclude_leaked:  # the space's: the table stands without the column
            try:
                unleaked(spec, cells, predictions, spec.study.exclude_leaked)
            except (ValueError, OSError) as e:
                print(f"study.exclude_leaked: {e}; the table has no column without leaked faces")
        for d in spec.study.degradations:  # each its own family, as the clean table
            found = run_predictions(client, Path(tmp), f"predictions/deg_{d.key}.npz")
            compare_cells(spec, cells, found, condition=d.label)
    return spec, cells
