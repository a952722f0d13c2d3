"""MLflow tracking for a sweep: one parent run per sweep, one nested run per trial.

All MLflow writes happen in the driver (a Ray Tune callback), so a SQLite store has one
writer and workers on other nodes never need to reach the tracking server. Runs are found
by tags (`nrfer.sweep_id`, `nrfer.trial_id`) before any is created, so a resumed sweep
reuses its parent and trial runs instead of duplicating them, and none is left RUNNING.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from ray import tune

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ROLE, SWEEP_ID, TRIAL_ID = "nrfer.role", "nrfer.sweep_id", "nrfer.trial_id"


def tracking_uri(cli_value: str | None = None) -> str:
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _git_commit() -> str:
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


def _versions() -> dict[str, str]:
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


def find_runs(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([experiment_id], filter_string=query, max_results=1000)


class SweepTracker:
    """Owns the parent run; creates, finds and closes trial runs."""

    def __init__(self, uri: str, experiment: str, sweep_id: str) -> None:
        self.uri, self.sweep_id = uri, sweep_id
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent_id: str | None = None
        self._trial_runs: dict[str, str] = {}

    def start_parent(self, spec_dict: dict, space_file: Path, storage: str) -> str:
        found = find_runs(self.client, self.experiment_id, {ROLE: "sweep", SWEEP_ID: self.sweep_id})
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            return self.parent_id
        tags = {
            ROLE: "sweep",
            SWEEP_ID: self.sweep_id,
            "mlflow.runName": self.sweep_id,
            "nrfer.git_commit": _git_commit(),
            "nrfer.storage": storage,
            **{f"nrfer.version.{k}": v for k, v in _versions().items()},
        }
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.parent_id = run.info.run_id
        self.client.log_artifact(self.parent_id, str(space_file), "space")
        self.client.log_dict(self.parent_id, spec_dict, "space/resolved_spec.yaml")
        return self.parent_id

    def trial_run(self, trial_id: str, params: dict[str, Any]) -> str:
        if trial_id in self._trial_runs:
            return self._trial_runs[trial_id]
        found = find_runs(
            self.client, self.experiment_id, {SWEEP_ID: self.sweep_id, TRIAL_ID: trial_id}
        )
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            tags = {
                ROLE: "trial",
                SWEEP_ID: self.sweep_id,
                TRIAL_ID: trial_id,
                "mlflow.parentRunId": self.parent_id,
                "mlflow.runName": trial_id,
            }
            run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
            for key, value in params.items():
                self.client.log_param(run_id, key, str(value)[:6000])
        self._trial_runs[trial_id] = run_id
        return run_id

    def log_epoch(self, run_id: str, metrics: dict, step: int) -> None:
        numeric = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        mlflow.tracking.MlflowClient(self.uri).log_batch(
            run_id, metrics=[mlflow.entities.Metric(k, v, 0, step) for k, v in numeric.items()]
        ) if numeric else None

    def end_trial(self, trial_id: str, status: str) -> None:
        run_id = self._trial_runs.pop(trial_id, None)
        if run_id:
            self.client.set_terminated(run_id, status)

    def close_open_trials(self, status: str = "KILLED") -> int:
        """Close every trial run of this sweep still RUNNING (e.g. after a crash)."""
        n = 0
        for run in find_runs(
            self.client, self.experiment_id, {SWEEP_ID: self.sweep_id, ROLE: "trial"}
        ):
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status)
                n += 1
        self._trial_runs.clear()
        return n

    def end_parent(
        self, status: str, metrics: dict | None = None, leaderboard: list | None = None
    ) -> None:
        if not self.parent_id:
            return
        for k, v in (metrics or {}).items():
            self.client.log_metric(self.parent_id, k, float(v))
        if leaderboard is not None:
            self.client.log_dict(self.parent_id, leaderboard, "leaderboard.json")
        self.client.set_terminated(self.parent_id, status)


class MLflowTrialCallback(tune.Callback):
    """Driver-side: trial start -> nested run, each result -> metrics, end -> run status."""

    def __init__(self, tracker: SweepTracker) -> None:
        self.tracker = tracker

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.trial_run(trial.trial_id, trial.config)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.tracker.trial_run(trial.trial_id, trial.config)
        self.tracker.log_epoch(
            run_id, result, step=int(result.get("epoch", result.get("training_iteration", 0)))
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.tracker.trial_run(trial.trial_id, trial.config)
        self.tracker.end_trial(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.tracker.trial_run(trial.trial_id, trial.config)
        if trial.error_file and Path(trial.error_file).is_file():
            self.tracker.client.log_artifact(run_id, trial.error_file, "error")
        self.tracker.client.set_tag(run_id, "nrfer.failed", "true")
        self.tracker.end_trial(trial.trial_id, "FAILED")
