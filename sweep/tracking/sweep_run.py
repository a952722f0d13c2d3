"""The driver side: the sweep's parent run, and the callback that closes the trial runs their
trials cannot close themselves (stopped by ASHA, crashed), so no run is left RUNNING."""

from __future__ import annotations

import functools
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from ray import tune

from sweep.compat.ray_tune import saved_trial_statuses
from sweep.retention import KEPT_TAG, Retention, trial_score, tune_state_time
from sweep.tracking.store import (
    DIVERGED,
    EPOCH_KEYS,
    FINAL_ATTEMPTS,
    INSTANCE,
    INTERRUPTED,
    ROLE,
    STATE_TAG,
    SWEEP_ID,
    TRIAL_ID,
    find_runs,
    log_metrics,
    logged_steps,
    read_history,
    with_retries,
)
from sweep.tracking.ui import (
    DESCRIPTION,
    EXPERIMENT_KIND,
    dataset_input,
    sweep_description,
    trial_description,
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


def space_params(spec: dict) -> list[Param]:
    """The sweep's searched space and settings as the parent run's params (what the UI's
    params table shows): `search.<key>` = its distribution, and the sweep's own settings."""
    out = {
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


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store, in
    `<store>-artifacts/` (`mlflow.db` -> `mlflow-artifacts/`), whatever folder the sweep
    was started from (MLflow's default is ./mlruns of the current folder); a server's own
    artifact store otherwise (None)."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / f"{db.stem}-artifacts").as_uri()


class SweepTracker:
    """Driver side: the experiment and the parent run."""

    def __init__(self, uri: str, experiment: str, sweep_id: str, instance: str) -> None:
        self.uri, self.sweep_id, self.instance = uri, sweep_id, instance
        mlflow.set_tracking_uri(uri)
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
        datasets: list[dict] = (),
        description: str = "",
    ) -> str:
        """The sweep's run, named after the sweep; `datasets` (nrfer.data.identity) are the
        data its trials train on, logged as dataset inputs."""
        found = find_runs(self.client, self.experiment_id, {ROLE: "sweep", INSTANCE: self.instance})
        if found:  # a resumed sweep continues its own parent run, never another sweep's
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            self.client.set_tag(self.parent_id, "nrfer.storage", storage)  # it may have moved
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
        self.client.log_artifact(self.parent_id, str(space_file), "space")
        self.client.log_dict(self.parent_id, spec_dict, "space/resolved_spec.yaml")
        # in file order (the YAML copy's keys are sorted): a study's grid is in this order
        self.client.log_dict(self.parent_id, spec_dict, SPEC_JSON)
        self.client.log_batch(self.parent_id, params=space_params(spec_dict))
        if datasets:
            self.client.log_inputs(self.parent_id, [dataset_input(d) for d in datasets])
        return self.parent_id

    def context(self) -> dict:
        """What a trial needs to log to its nested run (passed to workers)."""
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_id": self.parent_id,
            "sweep_id": self.sweep_id,
            "instance": self.instance,
        }

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
        if runs is None:
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
        for f in sorted(report_dir.iterdir()):
            self.client.log_artifact(self.parent_id, str(f), "report")
        runs = self.trial_runs()
        if best:
            best_run = runs.get(best["trial_id"])
            run_id = best_run.info.run_id if best_run else ""
            self.client.set_tag(self.parent_id, "nrfer.best_trial_run_id", run_id)
            self.client.set_tag(self.parent_id, "nrfer.best_trial_id", best["trial_id"])
        for k, v in metrics.items():
            self.client.log_metric(self.parent_id, k, float(v))
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
        self.client.set_tag(self.parent_id, DESCRIPTION, text)

    def end_parent(self, status: str) -> None:
        if self.parent_id:
            with_retries(
                lambda: self.client.set_terminated(self.parent_id, status),
                "close the parent run",
                FINAL_ATTEMPTS,
            )


class TrialStatusCallback(tune.Callback):
    """Driver side: closes the runs that their trials could not close themselves, and
    applies the checkpoint retention (sweep.retention) to each trial that ends."""

    def __init__(
        self,
        tracker: SweepTracker,
        max_epochs: int,
        metric: str = "val_acc",
        ended=None,
        retention: Retention | None = None,
        mode: str = "max",
    ) -> None:
        self.tracker, self.max_epochs, self.metric, self.mode = tracker, max_epochs, metric, mode
        self.ended = ended  # sweep.resume.EndedTrials: Tune's ends, recorded whatever MLflow does
        self.retention = retention
        self.pending: dict[str, tuple] = {}  # runs not closed while MLflow was away
        self.unretained: dict[str, tuple] = {}  # ended trials whose best.pt MLflow did not take
        # retained trials whose files wait for a Tune state saved with them as ended (a resume
        # from an older state runs them again, from their checkpoint): id -> Tune's folder
        self.unsaved: dict[str, Any] = {}
        self._state_seen = 0.0  # the mtime of the newest Tune state read

    def _run(self, trial):
        return self.tracker.trial_run(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.ended is not None:
            # a trial that completed before a kill, which Tune (its saved state older than
            # that) ran again: its trainable returned at once, and its result is the one it
            # ended with, not the older one of its checkpoint (sweep.resume.EndedTrials)
            if final := self.ended.final(trial.trial_id):
                trial.update_last_result(dict(final))
            self.ended.add(trial.trial_id, dict(trial.last_result or {}))
        self._close(self._complete, trial)
        score = trial_score(trial, self.metric, self.mode)
        if trial.trial_id in self.pending:  # its checkpoint holds epochs MLflow lacks: later
            self.unretained[trial.trial_id] = (score, trial.path)
        else:
            self.retain(trial.trial_id, score, trial.path)

    def retain(self, trial_id: str, score: float | None, trial_dir, saved: bool = False) -> None:
        """The retention of an ended trial; while MLflow is away, its folder stays and the
        end of the sweep (or its resume) tries again. Its files are deleted once Tune's
        saved state has it as ended (`saved`: it has), see `on_step_end`."""
        if self.retention is None:
            return
        if self.retention.end_trial(trial_id, score, self) is None:
            self.unretained[trial_id] = (score, trial_dir)
            return
        self.unretained.pop(trial_id, None)
        if saved:
            self.retention.remove_files(trial_id, trial_dir)
        else:
            self.unsaved[trial_id] = trial_dir

    def on_step_end(self, iteration, trials, **info):
        """Delete the files of retained trials once Tune's saved state in the sweep folder
        has them as ended (Tune saves it every 2 s at most; read when it changed)."""
        if not self.unsaved:
            return
        saved = tune_state_time(self.retention.exp_dir)
        if saved == self._state_seen:
            return
        self._state_seen = saved
        statuses = saved_trial_statuses(self.retention.exp_dir)
        for trial_id, trial_dir in list(self.unsaved.items()):
            if statuses.get(trial_id) == "TERMINATED":
                self.retention.remove_files(trial_id, trial_dir)
                del self.unsaved[trial_id]

    def remove_unsaved(self) -> None:
        """After fit(): Tune saved its final state; every retained trial's files go."""
        for trial_id, trial_dir in list(self.unsaved.items()):
            self.retention.remove_files(trial_id, trial_dir)
        self.unsaved.clear()

    # The retention's CheckpointStore: the trials' MLflow runs (a trial without one has
    # nothing to drop or tag; its best.pt has nowhere to go, so its files wait).
    def tag(self, trial_id: str, kept: bool) -> bool:
        run_id = self.tracker.trial_run_id(trial_id)
        if run_id is None:
            return True
        keep = self.retention.keep if self.retention else None
        top = "every trial" if keep is None else f"the top {keep} by {self.metric}"
        text = (
            f"best.pt kept under checkpoint/ ({top})"
            if kept
            else f"best.pt not kept: outside {top} (tracking.keep_checkpoints)"
        )
        done = with_retries(lambda: self.tracker.client.set_tag(run_id, KEPT_TAG, text), "tag")
        return done is not None

    def upload(self, trial_id: str, best: Path) -> bool:
        run_id = self.tracker.trial_run_id(trial_id)
        if run_id is None:
            return False
        client = self.tracker.client
        done = with_retries(
            lambda: client.log_artifact(run_id, str(best), "checkpoint"), "upload best.pt"
        )
        return done is not None

    def drop(self, trial_id: str) -> bool:
        run_id = self.tracker.trial_run_id(trial_id)
        if run_id is None:
            return True
        client = self.tracker.client

        def drop() -> bool:
            uri = client.get_run(run_id).info.artifact_uri
            get_artifact_repository(uri).delete_artifacts("checkpoint")
            return True

        if with_retries(drop, f"delete the best.pt of {trial_id}") is None:
            return False
        return self.tag(trial_id, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.ended is not None:
            self.ended.add(trial.trial_id, None)
        self._close(self._error, trial)

    def _close(self, how, trial) -> None:
        """A few quick tries (the sweep goes on meanwhile); kept for `flush_pending` if
        MLflow is away."""
        if with_retries(lambda: how(trial), f"close the run of {trial.trial_id}", 3) is None:
            self.pending[trial.trial_id] = (how, trial)
        else:
            self.pending.pop(trial.trial_id, None)

    def flush_pending(self) -> int:
        """At the end of the sweep: close the runs an outage left open, waiting it out like a
        finishing trial does. Returns how many are still open."""
        for trial_id, (how, trial) in list(self.pending.items()):
            close = functools.partial(how, trial)
            done = with_retries(close, f"close the run of {trial_id}", FINAL_ATTEMPTS)
            if done is not None:
                del self.pending[trial_id]
        for trial_id, (score, trial_dir) in list(self.unretained.items()):
            if trial_id not in self.pending:  # else its files wait for the resume
                self.retain(trial_id, score, trial_dir)
        if self.retention is not None:
            self.retention.finish_evictions(self)
        self.remove_unsaved()
        return len(self.pending)

    def _log_unlogged_epochs(self, trial, run_id: str) -> None:
        """A trial logs an epoch after Tune takes its checkpoint; when Tune stops the trial
        there (ASHA, max epochs) or it dies, the epochs its checkpoint holds, and the one its
        last result reports, are logged here."""
        ckpt = trial.checkpoint
        rows = read_history(ckpt.path) if ckpt is not None and ckpt.path else []
        last = trial.last_result or {}
        if "epoch" in last and all(k in last for k in EPOCH_KEYS) and not last.get("diverged"):
            rows.append(last)  # (a trial run again after a kill: its checkpoint is older)
        if not rows:
            return
        client = self.tracker.client
        have = logged_steps(client, run_id)
        now = int(time.time() * 1000)
        missing = [
            Metric(k, float(row[k]), now, int(row["epoch"]))
            for row in rows
            for k in EPOCH_KEYS
            if (k, int(row["epoch"])) not in have
        ]
        log_metrics(client, run_id, missing)

    def _describe(self, run, trial, how: str) -> None:
        result = trial.last_result or {}
        if how == "finished" and result.get("diverged"):
            how = "diverged"
        text = trial_description(result, self.metric, self.max_epochs, how)
        self.tracker.client.set_tag(run.info.run_id, DESCRIPTION, text)

    def _complete(self, trial) -> None:
        run = self._run(trial)
        if run is None:
            return
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        # still open: the scheduler stopped it (its trainable never returned to close it);
        # KILLED: a resume closed it, the driver having been killed before it could
        still_open = run.info.status in ("RUNNING", "KILLED")
        stopped = still_open and epochs < self.max_epochs
        self._describe(run, trial, "stopped" if stopped else "finished")
        if not still_open:
            return
        client, run_id = self.tracker.client, run.info.run_id
        self._log_unlogged_epochs(trial, run_id)
        # Still RUNNING after the trial ended: the scheduler stopped it early.
        client.set_tag(run_id, "nrfer.stopped_early", str(epochs < self.max_epochs).lower())
        if STATE_TAG in run.data.tags:
            client.delete_tag(run_id, STATE_TAG)
        client.set_terminated(run_id, "FINISHED")

    def _error(self, trial) -> None:
        run = self._run(trial)
        if run is None:
            return
        client, run_id = self.tracker.client, run.info.run_id
        self._describe(run, trial, "failed")
        self._log_unlogged_epochs(trial, run_id)
        error = Path(trial.error_file) if trial.error_file else None
        if error is not None and error.is_file():
            with_retries(
                lambda: client.log_artifact(run_id, str(error), "error"), "upload traceback"
            )
            if DIVERGED in error.read_text(errors="replace"):
                client.set_tag(run_id, "nrfer.diverged", "true")
        client.set_tag(run_id, "nrfer.failed", "true")
        if STATE_TAG in run.data.tags:
            client.delete_tag(run_id, STATE_TAG)
        client.set_terminated(run_id, "FAILED")
