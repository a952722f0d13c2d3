"""The driver's callback on each trial's end: it closes the runs their trials could not close
themselves (stopped by ASHA, crashed), so no run is left RUNNING, and applies the checkpoint
retention (sweep.runtime.retention) to each trial that ends."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from mlflow.entities import Metric
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from ray import tune

from sweep.compat.ray_tune import saved_trial_statuses
from sweep.runtime.ledger import METRIC_RECORDS, Ledger, trial_score
from sweep.runtime.retention import KEPT_TAG, Retention, tune_state_time
from sweep.tracking.replay import replay_into
from sweep.tracking.store import (
    DIVERGED,
    EPOCH_KEYS,
    FINAL_ATTEMPTS,
    STATE_TAG,
    log_metrics,
    logged_steps,
    read_history,
    with_retries,
)
from sweep.tracking.sweep_run import SweepTracker
from sweep.tracking.ui import DESCRIPTION, trial_description


class TrialStatusCallback(tune.Callback):
    """Driver side: closes the runs that their trials could not close themselves, and
    applies the checkpoint retention (sweep.runtime.retention) to each trial that ends."""

    def __init__(
        self,
        tracker: SweepTracker,
        ledger: Ledger,
        retention: Retention,
        max_epochs: int,
        metric: str = "val_acc",
        mode: str = "max",
    ) -> None:
        self.tracker, self.max_epochs, self.metric, self.mode = tracker, max_epochs, metric, mode
        # Tune's ends, recorded whatever MLflow does, with each one's retention: the trials
        # still to retain (MLflow away) and those whose files wait for a Tune state saved
        # with them as ended derive from it
        self.ledger = ledger
        self.retention = retention
        self.pending: dict[str, tuple] = {}  # runs not closed while MLflow was away
        self._state_seen = 0.0  # the mtime of the newest Tune state read

    def _run(self, trial):
        return self.tracker.trial_run(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        # a trial that completed before a kill, which Tune (its saved state older than
        # that) ran again: its trainable returned at once, and its result is the one it
        # ended with, not the older one of its checkpoint (sweep.runtime.ledger)
        if final := self.ledger.final(trial.trial_id):
            trial.update_last_result(dict(final))
        score = trial_score(trial, self.metric, self.mode)
        self.ledger.trial_ended(trial.trial_id, dict(trial.last_result or {}), score, trial.path)
        self._close(self._complete, trial)
        if trial.trial_id not in self.pending:  # else its checkpoint holds epochs MLflow lacks
            self.retain(trial.trial_id)

    def retain(self, trial_id: str) -> None:
        """The retention of an ended trial; while MLflow is away it stays unretained in the
        ledger and the end of the sweep (or its resume) tries again. Its files are deleted
        once Tune's saved state has it as ended, see `on_step_end`."""
        record = self.ledger.ended[trial_id]
        self.ledger.retain(trial_id, record.score, self.retention, self)

    def on_step_end(self, iteration, trials, **info):
        """Delete the files of retained trials once Tune's saved state in the sweep folder
        has them as ended (Tune saves it every 2 s at most; read when it changed)."""
        if not self.ledger.files_waiting:
            return
        saved = tune_state_time(self.retention.exp_dir)
        if saved == self._state_seen:
            return
        self._state_seen = saved
        statuses = saved_trial_statuses(self.retention.exp_dir)
        for trial_id, record in self.ledger.unremoved().items():
            if statuses.get(trial_id) == "TERMINATED":
                self.ledger.remove_files(trial_id, self.retention, record.path)

    def remove_unsaved(self) -> None:
        """After fit(): Tune saved its final state; every retained trial's files go."""
        for trial_id, record in self.ledger.unremoved().items():
            self.ledger.remove_files(trial_id, self.retention, record.path)

    # The retention's CheckpointStore: the trials' MLflow runs (a trial without one has
    # nothing to drop or tag; its best.pt has nowhere to go, so its files wait).
    def tag(self, trial_id: str, kept: bool) -> bool:
        run_id = self.tracker.trial_run_id(trial_id)
        if run_id is None:
            return True
        keep = self.retention.keep
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
        self.ledger.trial_ended(trial.trial_id, None, None, trial.path)
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
        for trial_id in self.ledger.unretained():
            if trial_id not in self.pending:  # else its files wait for the resume
                self.retain(trial_id)
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
        # first what the trial kept locally while MLflow was away (its exact values and
        # timestamps): else those epochs are logged here and again by the end-of-sweep replay
        record = self.ledger.exp_dir / METRIC_RECORDS / f"{trial.trial_id}.jsonl"
        if record.is_file():
            replay_into(client, record)
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
