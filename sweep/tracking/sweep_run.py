"""The driver side: the sweep's parent run, and the callback that closes the trial runs their
trials cannot close themselves (stopped by ASHA, crashed), so no run is left RUNNING."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from sweep.tracking.store import (
    FINAL_ATTEMPTS,
    INSTANCE,
    INTERRUPTED,
    ROLE,
    STATE_TAG,
    SWEEP_ID,
    TRIAL_ID,
    artifact_root,
    ensure_store,
    find_runs,
    with_retries,
)
from sweep.tracking.trial import RunContext
from sweep.tracking.ui import (
    DESCRIPTION,
    EXPERIMENT_KIND,
    SHARED_VIEW,
    dataset_input,
    runs_link,
    sweep_description,
    trials_view,
    view_key,
)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    import optuna
    import ray
    import timm
    import torch

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "mlflow": mlflow.__version__,
        "python": platform.python_version(),
    }


SPEC_JSON = "space/resolved_spec.json"
PARETO_TAG = (
    "nrfer.front_rank"  # each trial run of a sweep with several objectives: 1 = on the front
)
OLD_PARETO_TAG = "nrfer.pareto_front"  # its name before issue 41 (it held the rank too)


def space_params(spec: dict) -> list[Param]:
    """The sweep's searched space and settings as the parent run's params (what the UI's
    params table shows): `search.<key>` = its distribution, and the sweep's own settings."""
    out: dict[str, Any] = {
        f"search.{key}": json.dumps(body, sort_keys=True)
        for key, body in (spec.get("search") or {}).items()
    }
    stop = spec.get("early_stopping") or {}
    out.update(
        {
            "metric": spec.get("metric"),
            "mode": spec.get("mode"),
            "searcher": spec.get("searcher"),
            "early_stopping": json.dumps(stop, sort_keys=True),
            "budget.num_samples": (spec.get("budget") or {}).get("num_samples"),
            "budget.max_concurrent": (spec.get("budget") or {}).get("max_concurrent"),
        }
    )
    if spec.get("study"):
        out["study"] = json.dumps(spec["study"], sort_keys=True)
    return [Param(k, str(v)[:6000]) for k, v in out.items() if v is not None]


NOTE = "mlflow.note.content"  # the experiment's description in the UI


def experiment_note(sweep: str, experiment_id: str, instance: str) -> str:
    """The experiment's description: what its runs are, where a sweep's trials view is (a
    link the UI opens), and what its columns mean."""
    link = runs_link("", experiment_id, view_key(instance))
    return (
        f"**[Sweep {sweep}: its trials, best first]({link})** (the saved view with the "
        "searched values as columns; `nrfer ui --sweep NAME` prints it for any sweep). Each "
        "sweep is a parent run with a nested run per trial.\n\n"
        "Columns: `best_val_acc` is a trial's best epoch on validation, what trials are "
        "ranked by (`val_acc` in a run's charts is per epoch); a study adds `test_acc` "
        "(tested once) and the seed. Each parent run's `report/index.html` is the sweep's "
        "interactive report."
    )


class SweepTracker:
    """Driver side: the experiment and the parent run."""

    def __init__(self, uri: str, experiment: str, sweep_id: str, instance: str) -> None:
        self.uri, self.sweep_id, self.instance = uri, sweep_id, instance
        mlflow.set_tracking_uri(uri)
        ensure_store(uri)  # a new SQLite store: created once, under its lock
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            exp.experiment_id
            if exp
            else self.client.create_experiment(experiment, artifact_location=artifact_root(uri))
        )
        # the UI opens a training experiment on its runs (else on the GenAI traces overview)
        self.client.set_experiment_tag(self.experiment_id, *EXPERIMENT_KIND)
        self.parent_id: str | None = None
        self._run_ids: dict[str, str] = {}  # trial id -> run id, as found

    def start_parent(
        self,
        spec_dict: dict,
        space_file: Path,
        storage: str,
        datasets: Sequence[dict] = (),
        description: str = "",
    ) -> str:
        """The sweep's run, named after the sweep; `datasets` (nrfer.data.identity) are the
        data its trials train on, logged as dataset inputs."""
        found = find_runs(self.client, self.experiment_id, {ROLE: "sweep", INSTANCE: self.instance})
        if found:  # a resumed sweep continues its own parent run, never another sweep's
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            self.client.set_tag(self.parent_id, "nrfer.storage", storage)  # it may have moved
            self.save_trials_view(spec_dict)  # (a sweep started before the view had none)
            return self.parent_id
        # an earlier sweep of this name keeps its parent; this one is listed beside it
        earlier = find_runs(
            self.client, self.experiment_id, {ROLE: "sweep", SWEEP_ID: self.sweep_id}
        )
        tags = {
            ROLE: "sweep",
            SWEEP_ID: self.sweep_id,
            INSTANCE: self.instance,
            "mlflow.runName": self.sweep_id + (f"-{len(earlier) + 1}" if earlier else ""),
            DESCRIPTION: description,
            "nrfer.git_commit": git_commit(),
            "nrfer.storage": storage,
            **{f"nrfer.version.{k}": v for k, v in package_versions().items()},
        }
        self.parent_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self.save_trials_view(spec_dict)
        self.client.log_artifact(self.parent_id, str(space_file), "space")
        self.client.log_dict(self.parent_id, spec_dict, "space/resolved_spec.yaml")
        # in file order (the YAML copy's keys are sorted): a study's grid is in this order
        self.client.log_dict(self.parent_id, spec_dict, SPEC_JSON)
        self.client.log_batch(self.parent_id, params=space_params(spec_dict))
        if datasets:
            self.client.log_inputs(self.parent_id, [dataset_input(d) for d in datasets])
        return self.parent_id

    def save_trials_view(self, spec_dict: dict) -> None:
        """The experiment's saved view of this sweep's trials (MLflow's runs page shows its
        metric and searched values as columns; `sweep.tracking.ui.runs_link` opens it)."""
        view = trials_view(
            self.sweep_id,
            self.instance,
            spec_dict.get("metric") or "val_acc",
            spec_dict.get("mode") or "max",
            list(spec_dict.get("search") or {}),
            study=bool(spec_dict.get("study")),
            created_ms=int(time.time() * 1000),
            objectives=list(spec_dict.get("objectives") or {}),
        )
        self.client.set_experiment_tag(
            self.experiment_id, SHARED_VIEW + view_key(self.instance), view
        )
        self.client.set_experiment_tag(
            self.experiment_id,
            NOTE,
            experiment_note(self.sweep_id, self.experiment_id, self.instance),
        )

    @property
    def parent(self) -> str:
        """The parent run's id (once started)."""
        if self.parent_id is None:
            raise RuntimeError("the sweep's parent run is not started")
        return self.parent_id

    def context(self) -> RunContext:
        """What a trial needs to log to its nested run (passed to workers)."""
        return RunContext(self.uri, self.experiment_id, self.parent, self.sweep_id, self.instance)

    def tag_fronts(self, fronts: dict[str, int | None]) -> None:
        """Each trial run's `nrfer.front_rank` (1: on the Pareto front of the sweep's
        objectives; 2: on the next front ...; none: an objective unmeasured), searchable in the
        UI: tags.`nrfer.front_rank` = '1'."""
        runs = self.trial_runs()
        for trial_id, front in fronts.items():
            if trial_id in runs:
                value = "none" if front is None else str(front)
                self.client.set_tag(runs[trial_id].info.run_id, PARETO_TAG, value)

    def trial_runs(self, attempts: int = FINAL_ATTEMPTS) -> dict[str, Any]:
        """trial_id -> run, for this sweep instance only. Waits out an MLflow outage (about
        two minutes of backoff) like a finishing trial does: the end of a sweep needs the runs."""
        tags = {INSTANCE: self.instance, ROLE: "trial"}
        runs = with_retries(
            lambda: find_runs(self.client, self.experiment_id, tags),
            "list the trial runs",
            attempts,
            quiet=attempts == 1,
        )
        if not isinstance(runs, list):
            raise RuntimeError(
                f"MLflow at {self.uri} did not answer for minutes; the sweep's state is saved: "
                "continue with --resume when it is back"
            )
        return {r.data.tags[TRIAL_ID]: r for r in runs}

    def trial_run(self, trial_id: str):
        """The run of one trial of this sweep instance (None: none yet), by its id once
        known: one row per ended trial instead of a search of every trial run."""
        run_id = self.trial_run_id(trial_id)
        return self.client.get_run(run_id) if run_id else None

    def trial_run_id(self, trial_id: str) -> str | None:
        if trial_id not in self._run_ids:
            tags = {INSTANCE: self.instance, ROLE: "trial", TRIAL_ID: trial_id}
            found = find_runs(self.client, self.experiment_id, tags, limit=1)
            if not found:
                return None
            self._run_ids[trial_id] = found[0].info.run_id
        return self._run_ids[trial_id]

    def close_open_trials(self, status: str = "KILLED") -> int:
        """Close every trial run of this sweep instance still RUNNING (after a crash or an
        interrupt)."""
        n = 0
        for run in self.trial_runs().values():
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status)
                if status == "KILLED":  # the words every view uses for it
                    self.client.set_tag(run.info.run_id, STATE_TAG, INTERRUPTED)
                n += 1
        return n

    def delete_orphan_trial_runs(self, known: set[str]) -> int:
        """Delete the trial runs of trials Tune has no record of: a killed driver can start
        a trial (and its run) after Tune last saved its state; the resumed sweep samples
        that trial again under a new id, so its old run would be a duplicate. Only runs of
        this instance: a run of another sweep of the same name is never touched."""
        orphans = [r for t, r in self.trial_runs().items() if t not in known]
        for run in orphans:
            self.client.delete_run(run.info.run_id)
        return len(orphans)

    def finish(
        self,
        report_dir: Path,
        metrics: dict[str, float],
        best: dict | None,
        metric: str,
        source: str,
    ) -> None:
        """The sweep's outcome on the parent run: the report files, its summary metrics,
        which trial (and run) was best, and a one-line description."""
        parent = self.parent
        for f in sorted(report_dir.iterdir()):
            self.client.log_artifact(parent, str(f), "report")
        runs = self.trial_runs()
        if best:
            best_run = runs.get(best["trial_id"])
            run_id = best_run.info.run_id if best_run else ""
            self.client.set_tag(parent, "nrfer.best_trial_run_id", run_id)
            self.client.set_tag(parent, "nrfer.best_trial_id", best["trial_id"])
        for k, v in metrics.items():
            self.client.log_metric(parent, k, float(v))
        counts = {
            "stopped early": sum(
                r.data.tags.get("nrfer.stopped_early") == "true" for r in runs.values()
            ),
            "diverged": sum(r.data.tags.get("nrfer.diverged") == "true" for r in runs.values()),
            "failed": sum(
                r.data.tags.get("nrfer.failed") == "true"
                and r.data.tags.get("nrfer.diverged") != "true"
                for r in runs.values()
            ),
        }
        text = sweep_description(self.sweep_id, source, len(runs), best, metric, counts)
        self.client.set_tag(parent, DESCRIPTION, text)

    def end_parent(self, status: str) -> None:
        if parent := self.parent_id:
            with_retries(
                lambda: self.client.set_terminated(parent, status),
                "close the parent run",
                FINAL_ATTEMPTS,
            )


class SweepNotFound(ValueError):
    """No sweep (or no usable best trial of one) in the tracking store."""


def find_sweep(client: MlflowClient, sweep: str | None):
    """The parent run of sweep `sweep` (an experiment name), else the most recent sweep."""
    if sweep:
        exp = client.get_experiment_by_name(sweep)
        if exp is None:
            names = [e.name for e in client.search_experiments()]
            raise SweepNotFound(
                f"no sweep named {sweep!r} in the tracking store; sweeps there: {', '.join(names) or 'none'}"
            )
        experiments = [exp.experiment_id]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{ROLE}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise SweepNotFound(
            f"no sweep run (tag {ROLE}=sweep) found{' for ' + sweep if sweep else ''}; run launch.py first"
        )
    return runs[0]
