"""The end of a sweep: its leaderboard, report and (for a study) table, logged to the parent
run, and the summary the launcher prints (`SweepSummary`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.analysis.report import pareto_rows, rank, write_report
from sweep.analysis.study import study_table
from sweep.analysis.study_tables import degradation_plot, render, write_tables
from sweep.runtime.live_report import write_report_html
from sweep.runtime.retention import WORK
from sweep.spec.space import SweepSpec
from sweep.tracking import SweepTracker


@dataclass
class SweepSummary:
    """What a finished (or interrupted) sweep hands back: the launcher prints it."""

    sweep: str
    parent_run_id: str
    tracking_uri: str
    experiment_id: str
    instance: str
    num_trials: int
    num_errors: int
    unfinished: int  # > 0: interrupted; `--resume` continues it
    best: dict | None  # the leaderboard's first row (by validation)
    leaderboard: list[dict]  # the top 5 rows
    importance: dict[str, float]  # fANOVA importance per searched key
    wall_s: float  # Tune's fit() time
    results: Any  # Ray's ResultGrid, for callers that want every trial
    elapsed_s: float = 0.0  # from the launch to the end, start-up included
    storage: str = ""  # the sweep's folder
    stopped_because: str | None = None  # the disk guard's reason, if it stopped the sweep
    data_load_s: float = 0.0
    sr_caches: dict[str, dict] = field(default_factory=dict)  # SR cache folder -> manifest
    optuna_storage: str = ""
    warm_start_trials: int = 0
    study_table: str | None = None  # a study's table (markdown)
    study_cells: list | None = None  # its cells (sweep.analysis.study.Cell)
    pareto: list[dict] = field(default_factory=list)  # several objectives: the front's rows
    pareto_of: int = 0  # the trials with every objective measured (the front is among them)


def _unfinished(spec: SweepSpec, wall_s: float, ended: int) -> int:
    """Trials still to run when fit() returned: > 0 after an interrupt (SIGINT), which Tune
    answers by saving its state and returning early. `ended`: the trials Tune ended (the
    ledger's record, `sweep.runtime.ledger`; Tune itself marks an interrupted trial
    TERMINATED as well), whatever the MLflow store holds. A spent time budget is not an
    interrupt."""
    if spec.budget.time_budget_s and wall_s >= spec.budget.time_budget_s:
        return 0
    return max(spec.budget.num_samples - ended, 0)


def summarize(
    spec: SweepSpec,
    tracker: SweepTracker,
    results,
    wall: float,
    source: str,
    ended: int,
    exp_dir: Path,
    spec_dict: dict,
) -> SweepSummary:
    """The leaderboard and report of a finished (or interrupted) sweep, logged to the parent.
    The report is written in the sweep's work folder (a driver killed while writing it
    leaves it there, inside --storage, and the resume's sweep of work folders deletes it)."""
    runs = tracker.trial_runs()
    unfinished = _unfinished(spec, wall, ended)
    run_ids = {tid: r.info.run_id for tid, r in runs.items()}
    work = Path(exp_dir) / WORK
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".report-", dir=work) as tmp:
        names = {tid: r.data.tags.get("mlflow.runName", tid) for tid, r in runs.items()}
        ranked, importance = write_report(results, spec, run_ids, Path(tmp), names)
        best = ranked[0] if ranked else None
        table = study_results(spec, tracker, Path(tmp)) if spec.is_study else None
        try:  # the interactive report: every trial, offline (sweep.analysis.html_report)
            study_md = (table or {}).get("study_table")
            write_report_html(tracker, spec_dict, Path(tmp), study_md)
        except Exception as e:  # a view: its failure must not lose the sweep's results
            print(f"warning: the sweep's interactive report could not be written: {e}")
        metrics = {"num_trials": len(results), "num_errors": results.num_errors, "wall_s": wall}
        if best:
            metrics[f"best_{spec.metric}"] = best[spec.metric]
        pareto = rank(pareto_rows(ranked), spec)
        if spec.multi_objective:
            metrics["pareto_front_size"] = len(pareto)
            tracker.tag_fronts({r["trial_id"]: r.get("front") for r in ranked})
        tracker.finish(Path(tmp), metrics, best, spec.metric, source or spec.source)
    return SweepSummary(
        sweep=spec.name,
        parent_run_id=tracker.parent,
        tracking_uri=tracker.uri,
        experiment_id=tracker.experiment_id,
        instance=tracker.instance,
        num_trials=len(results),
        num_errors=results.num_errors,
        unfinished=unfinished,
        best=best,
        leaderboard=ranked[:5],
        pareto=pareto,
        pareto_of=sum(r.get("front") is not None for r in ranked),
        importance=importance,
        wall_s=wall,
        results=results,
        **(table or {}),
    )


def study_results(spec: SweepSpec, tracker: SweepTracker, out: Path) -> dict:
    """A study's table (sweep.analysis.study) from its runs in MLflow, written into `out` (the
    parent run's report) and returned as {"study_table": markdown, "study_cells": cells}."""
    parent = tracker.client.get_run(tracker.parent)
    _, cells = study_table(tracker.client, parent, spec, driver_done=True)
    tables = render(spec, cells)
    write_tables(out, tables, degradation_plot(spec, cells))
    return {"study_table": tables["md"], "study_cells": cells}
