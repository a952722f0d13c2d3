"""MLflow tracking for a sweep: one parent run per sweep, one nested run per trial.

The driver owns the parent run (`SweepTracker`). Each trial logs to its own nested run
from the worker process (`TrialLogger`), so a multi-node sweep with an `http://` tracking
server needs nothing from the driver. Runs are found by tags (`nrfer.sweep_id`,
`nrfer.trial_id`) before any is created, so a retried trial or a resumed sweep continues
its run instead of duplicating it. A trial cannot close its own run when ASHA stops it or
it crashes; the driver's `TrialStatusCallback` does, so no run is left RUNNING.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray import tune

from nrfer.train import RunPaths

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DIVERGED = "FloatingPointError"  # what nrfer.train.fit raises on a non-finite loss
ROLE, SWEEP_ID, TRIAL_ID = "nrfer.role", "nrfer.sweep_id", "nrfer.trial_id"
log = logging.getLogger("nrfer.sweep")
T = TypeVar("T")
FINAL_ATTEMPTS = 8  # at a trial's end: about a minute of backoff before giving up on MLflow
# A trial worker's own HTTP retries stay short: we retry (and keep a backlog) ourselves, so a
# server that is away does not hold up training. Values the user set are kept.
HISTORY_FILE = "history.json"  # in each trial checkpoint: its epochs' metrics, as logged
EPOCH_KEYS = ("val_acc", "val_macro_f1", "val_loss", "train_loss", "best_val_acc")
WORKER_HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri(cli_value: str | None = None) -> str:
    """The URI from the CLI, the environment or the default, with a relative SQLite path
    made absolute: trial workers run in other folders and must find the same file."""
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and ":memory:" not in uri:
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def with_retries(
    fn: Callable[[], T], what: str, attempts: int = 4, delay_s: float = 0.5, quiet: bool = False
) -> T | bool | None:
    """Tracking must never crash training: retry with backoff, then warn and go on.
    Returns fn's result (True when it returns None), or None when every attempt failed."""
    for i in range(attempts):
        try:
            out = fn()
            return True if out is None else out
        except Exception as e:  # MlflowException, connection errors, sqlite "database is locked"
            if i == attempts - 1:
                if not quiet:
                    log.warning("MLflow: %s failed after %d attempts: %s", what, attempts, e)
                return None
            time.sleep(delay_s * 2**i)
    return None


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


def node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return platform.node()


def find_runs(client: MlflowClient, experiment_id: str, tags: dict[str, str]) -> list:
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([experiment_id], filter_string=query, max_results=5000)


def read_history(ckpt_dir: str | Path) -> list[dict]:
    """The per-epoch rows a trial checkpoint holds ([] for none)."""
    path = Path(ckpt_dir) / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def logged_steps(client: MlflowClient, run_id: str) -> set[tuple[str, int]]:
    """(key, step) of every metric value a run has."""
    run = client.get_run(run_id)
    return {
        (key, m.step) for key in run.data.metrics for m in client.get_metric_history(run_id, key)
    }


def log_metrics(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    """log_batch in chunks of 500 (a batch holds at most 1,000 metrics)."""
    for i in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[i : i + 500])


def numeric(metrics: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


class SweepTracker:
    """Driver side: the experiment and the parent run."""

    def __init__(self, uri: str, experiment: str, sweep_id: str) -> None:
        self.uri, self.sweep_id = uri, sweep_id
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent_id: str | None = None

    def start_parent(self, spec_dict: dict, space_file: Path, storage: str) -> str:
        found = find_runs(self.client, self.experiment_id, {ROLE: "sweep", SWEEP_ID: self.sweep_id})
        if found:  # a resumed sweep continues its parent run
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
            return self.parent_id
        tags = {
            ROLE: "sweep",
            SWEEP_ID: self.sweep_id,
            "mlflow.runName": self.sweep_id,
            "nrfer.git_commit": git_commit(),
            "nrfer.storage": storage,
            **{f"nrfer.version.{k}": v for k, v in package_versions().items()},
        }
        self.parent_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
        self.client.log_artifact(self.parent_id, str(space_file), "space")
        self.client.log_dict(self.parent_id, spec_dict, "space/resolved_spec.yaml")
        return self.parent_id

    def context(self) -> dict:
        """What a trial needs to log to its nested run (passed to workers)."""
        return {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "parent_id": self.parent_id,
            "sweep_id": self.sweep_id,
        }

    def trial_runs(self) -> dict[str, Any]:
        """trial_id -> run, for this sweep."""
        runs = find_runs(self.client, self.experiment_id, {SWEEP_ID: self.sweep_id, ROLE: "trial"})
        return {r.data.tags[TRIAL_ID]: r for r in runs}

    def close_open_trials(self, status: str = "KILLED") -> int:
        """Close every trial run of this sweep still RUNNING (after a crash or an interrupt)."""
        n = 0
        for run in self.trial_runs().values():
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status)
                n += 1
        return n

    def delete_orphan_trial_runs(self, known: set[str]) -> int:
        """Delete the trial runs of trials Tune has no record of: a killed driver can start
        a trial (and its run) after Tune last saved its state; the resumed sweep samples
        that trial again under a new id, so its old run would be a duplicate."""
        orphans = [r for t, r in self.trial_runs().items() if t not in known]
        for run in orphans:
            self.client.delete_run(run.info.run_id)
        return len(orphans)

    def end_parent(self, status: str) -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status)


class TrialLogger:
    """Worker side: the nested run of one trial.

    Creating the run must succeed (with retries): a trial nobody can see is worse than a
    failed one, and Ray retries a trial that raises. After that, the tracking server may go
    away for a while without stopping training: each epoch's metrics get one quick attempt;
    what fails waits in a backlog that is retried with the next epoch (catch-up) and is also
    written to a local record (`record`, JSON lines) so that nothing is lost even if the
    server stays away; `python -m sweep.tracking replay FILE` uploads such a record later.
    """

    def __init__(self, context: dict, trial_id: str, record: Path | None = None) -> None:
        self.client = MlflowClient(context["uri"])
        self.context, self.trial_id = context, trial_id
        self.run_id: str | None = None
        self.record = record
        self.backlog: list[Metric] = []
        self.degraded = False  # the last send failed
        self.logged: set[tuple[str, int]] = set()  # (key, step) MLflow has or will get

    def start(self, params: dict[str, Any], sampled: dict[str, Any]) -> str | None:
        ctx = self.context

        def find_or_create() -> str:
            found = find_runs(
                self.client,
                ctx["experiment_id"],
                {SWEEP_ID: ctx["sweep_id"], TRIAL_ID: self.trial_id},
            )
            if found:  # Ray retried the trial (or a resumed sweep continues it): same run
                run = found[0]
                restarts = int(run.data.tags.get("nrfer.restarts", "0")) + 1
                self.client.set_tag(run.info.run_id, "nrfer.restarts", str(restarts))
                self.client.set_tag(run.info.run_id, "nrfer.worker_pid", str(os.getpid()))
                self.client.update_run(run.info.run_id, status="RUNNING")
                self.logged = logged_steps(self.client, run.info.run_id)
                return run.info.run_id
            tags = {
                ROLE: "trial",
                SWEEP_ID: ctx["sweep_id"],
                TRIAL_ID: self.trial_id,
                "mlflow.parentRunId": ctx["parent_id"],
                "mlflow.runName": self.trial_id,
                "nrfer.sampled": ",".join(sorted(sampled)),
                "nrfer.node_ip": node_ip(),
                "nrfer.worker_pid": str(os.getpid()),
                "nrfer.restarts": "0",
            }
            run_id = self.client.create_run(ctx["experiment_id"], tags=tags).info.run_id
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i : i + 100])
            return run_id

        self.run_id = with_retries(find_or_create, f"start run of trial {self.trial_id}")
        if self.run_id is None:
            raise RuntimeError(
                f"trial {self.trial_id}: cannot create its MLflow run at {ctx['uri']}"
            )
        return self.run_id

    def log_epoch(self, metrics: dict, step: int) -> None:
        if not self.run_id:
            return
        now = int(time.time() * 1000)
        # an epoch is logged once: a step MLflow already has (before a resume) is skipped
        new = [Metric(k, v, now, step) for k, v in numeric(metrics).items()]
        new = [m for m in new if (m.key, m.step) not in self.logged]
        self.logged.update((m.key, m.step) for m in new)
        self.backlog += new
        self.flush(attempts=1)

    def flush(self, attempts: int = 1, delay_s: float = 0.5) -> bool:
        """Send the backlog; True when MLflow has every metric logged so far."""
        if not self.backlog:
            return True
        pending = list(self.backlog)
        ok = with_retries(
            lambda: log_metrics(self.client, self.run_id, pending),
            f"log metrics of {self.trial_id}",
            attempts,
            delay_s,
            quiet=True,
        )
        if ok is None:
            if self.record is not None:
                self._write_record()
            log.warning(
                "MLflow unreachable at %s: trial %s keeps %d metric values locally%s and "
                "retries with the next epoch",
                self.context["uri"],
                self.trial_id,
                len(self.backlog),
                f" ({self.record})" if self.record else "",
            )
            self.degraded = True
            return False
        if self.degraded:
            self.degraded = False
            log.warning("MLflow reachable again: trial %s caught up", self.trial_id)
        self.backlog = []
        if self.record is not None:
            self.record.unlink(missing_ok=True)
        return True

    def _write_record(self) -> None:
        rows = [
            {
                "run_id": self.run_id,
                "key": m.key,
                "value": m.value,
                "timestamp": m.timestamp,
                "step": m.step,
            }
            for m in self.backlog
        ]
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.record.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            os.replace(tmp, self.record)
        except OSError as e:
            log.warning("could not write the local metric record %s: %s", self.record, e)

    def log_artifacts(self, folder: Path, path: str) -> None:
        if self.run_id and folder.is_dir():
            with_retries(
                lambda: self.client.log_artifacts(self.run_id, str(folder), path),
                f"upload {folder}",
                attempts=1,
            )

    def set_tag(self, key: str, value: str) -> None:
        if self.run_id:
            with_retries(lambda: self.client.set_tag(self.run_id, key, value), f"tag {key}")

    def log_dict(self, d: dict, path: str) -> None:
        if self.run_id:
            with_retries(lambda: self.client.log_dict(self.run_id, d, path), f"upload {path}")

    def fail(self, error_text: str, diverged: bool = False) -> None:
        """The trial ends itself as FAILED (e.g. diverged), with the traceback as an artifact."""
        if not self.run_id:
            return
        run_id = self.run_id
        self.flush(attempts=FINAL_ATTEMPTS)

        def mark() -> None:
            self.client.log_text(run_id, error_text, "error/error.txt")
            self.client.set_tag(run_id, "nrfer.failed", "true")
            if diverged:
                self.client.set_tag(run_id, "nrfer.diverged", "true")
            self.client.set_terminated(run_id, "FAILED")

        with_retries(mark, f"mark {self.trial_id} failed", FINAL_ATTEMPTS)

    def finish(self, artifacts: dict[str, Path] | None = None) -> None:
        """Catch up on every metric and upload the final artifacts (folder -> file), waiting
        longer now, then close the run as FINISHED. A run that could not get everything
        stays open: the driver uploads the checkpoint and closes it when the trial ends."""
        if not self.run_id:
            return
        complete = self.flush(attempts=FINAL_ATTEMPTS)
        if not complete:
            log.warning(
                "trial %s ends with %d metric values not in MLflow; they are in %s "
                "(the driver replays it; by hand: python -m sweep.tracking replay %s)",
                self.trial_id,
                len(self.backlog),
                self.record,
                self.record,
            )
        for folder, file in (artifacts or {}).items():
            if file.is_file():
                complete &= bool(
                    with_retries(
                        lambda f=file, d=folder: self.client.log_artifact(self.run_id, str(f), d),
                        f"upload {file}",
                        FINAL_ATTEMPTS,
                    )
                )
        if complete:
            with_retries(
                lambda: self.client.set_terminated(self.run_id, "FINISHED"),
                f"finish {self.trial_id}",
                FINAL_ATTEMPTS,
            )


def replay(record: Path, uri: str | None = None) -> int:
    """Upload a trial's local metric record (written while MLflow was unreachable)."""
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    client = MlflowClient(tracking_uri(uri))
    by_run: dict[str, list[Metric]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(
            Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"]))
        )
    for run_id, metrics in by_run.items():
        log_metrics(client, run_id, metrics)
    record.unlink()
    return len(rows)


class TrialStatusCallback(tune.Callback):
    """Driver side: closes the runs that their trials could not close themselves."""

    def __init__(self, tracker: SweepTracker, max_epochs: int) -> None:
        self.tracker, self.max_epochs = tracker, max_epochs

    def _run(self, trial):
        return self.tracker.trial_runs().get(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        with_retries(lambda: self._complete(trial), f"close the run of {trial.trial_id}", 3)

    def on_trial_error(self, iteration, trials, trial, **info):
        with_retries(lambda: self._error(trial), f"close the run of {trial.trial_id}", 3)

    def _log_unlogged_epochs(self, trial, run_id: str) -> None:
        """A trial logs an epoch after Tune takes its checkpoint; when Tune stops the trial
        there (ASHA, max epochs) or it dies, the epochs its checkpoint holds are logged here."""
        ckpt = trial.checkpoint
        rows = read_history(ckpt.path) if ckpt is not None and ckpt.path else []
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

    def _complete(self, trial) -> None:
        run = self._run(trial)
        if run is None or run.info.status != "RUNNING":
            return
        client, run_id = self.tracker.client, run.info.run_id
        self._log_unlogged_epochs(trial, run_id)
        # Still RUNNING after the trial ended: the scheduler stopped it early.
        epochs = int((trial.last_result or {}).get("training_iteration", 0))
        client.set_tag(run_id, "nrfer.stopped_early", str(epochs < self.max_epochs).lower())
        ckpt = trial.checkpoint
        best = Path(ckpt.path, RunPaths.BEST) if ckpt is not None and ckpt.path else None
        if best is not None and best.is_file():
            with_retries(
                lambda: client.log_artifact(run_id, str(best), "checkpoint"), "upload best.pt"
            )
        client.set_terminated(run_id, "FINISHED")

    def _error(self, trial) -> None:
        run = self._run(trial)
        if run is None:
            return
        client, run_id = self.tracker.client, run.info.run_id
        self._log_unlogged_epochs(trial, run_id)
        error = Path(trial.error_file) if trial.error_file else None
        if error is not None and error.is_file():
            with_retries(
                lambda: client.log_artifact(run_id, str(error), "error"), "upload traceback"
            )
            if DIVERGED in error.read_text(errors="replace"):
                client.set_tag(run_id, "nrfer.diverged", "true")
        client.set_tag(run_id, "nrfer.failed", "true")
        client.set_terminated(run_id, "FAILED")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sweep.tracking",
        description="Upload a trial's local metric record, written while MLflow was away.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="log the metrics in a record file, then delete it")
    rp.add_argument("record", type=Path)
    rp.add_argument("--tracking-uri")
    args = parser.parse_args(argv)
    n = replay(args.record, args.tracking_uri)
    print(f"replayed {n} metric values from {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "SweepTracker",
    "TrialLogger",
    "TrialStatusCallback",
    "tracking_uri",
]
