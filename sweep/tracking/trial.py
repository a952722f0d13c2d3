"""The trial side: the nested MLflow run a trial logs to from its worker process.

Like Ray's trial-side `setup_mlflow`: found by tag before one is created (a retried or
resumed trial continues its run), each epoch logged once, a local backlog while the server
is away, FAILED with the traceback when the trial diverges.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from nrfer.files import write_atomic
from sweep.tracking.store import (
    FINAL_ATTEMPTS,
    INSTANCE,
    ROLE,
    START_ATTEMPTS,
    STATE_TAG,
    SWEEP_ID,
    TRIAL_ID,
    find_runs,
    log_metrics,
    logged_steps,
    numeric,
    with_retries,
)
from sweep.tracking.ui import dataset_input

log = logging.getLogger("nrfer.sweep")


def node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return platform.node()


@dataclass(frozen=True)
class RunContext:
    """Where a trial's run goes: the store, the sweep's experiment and parent run, and the
    sweep's name and instance (handed from the driver to every trial)."""

    uri: str
    experiment_id: str
    parent_id: str
    sweep_id: str
    instance: str


class TrialLogger:
    """Worker side: the nested run of one trial.

    Creating the run must succeed (with retries): a trial nobody can see is worse than a
    failed one, and Ray retries a trial that raises. After that, the tracking server may go
    away for a while without stopping training: each epoch's metrics get one quick attempt;
    what fails waits in a backlog that is retried with the next epoch (catch-up) and is also
    written to a local record (`record`, JSON lines) so that nothing is lost even if the
    server stays away; `python -m sweep.tracking replay FILE` uploads such a record later.
    """

    def __init__(self, context: RunContext, trial_id: str, record: Path | None = None) -> None:
        self.client = MlflowClient(context.uri)
        self.context, self.trial_id = context, trial_id
        self.run_id: str | None = None
        self.record = record
        self.backlog: list[Metric] = []
        self.degraded = False  # the last send failed
        self.logged: set[tuple[str, int]] = set()  # (key, step) MLflow has or will get
        self.reused = False  # the run existed (Ray retried the trial, or the sweep resumed)

    def start(
        self,
        *,
        config: dict[str, Any],
        sampled: dict[str, Any],
        name: str | None = None,
    ) -> str:
        """Find or create the trial's run, named `name` (default: the trial id): `config`
        (the trial's flat config) logged as its params, the keys of `sampled` (what the
        searcher chose) as its tag nrfer.sampled."""
        ctx = self.context

        def find_or_create() -> str:
            found = find_runs(
                self.client,
                ctx.experiment_id,
                {INSTANCE: ctx.instance, TRIAL_ID: self.trial_id},
            )
            if found:  # Ray retried the trial (or a resumed sweep continues it): same run
                run = found[0]
                restarts = int(run.data.tags.get("nrfer.restarts", "0")) + 1
                self.client.set_tag(run.info.run_id, "nrfer.restarts", str(restarts))
                self.client.set_tag(run.info.run_id, "nrfer.worker_pid", str(os.getpid()))
                self.client.update_run(run.info.run_id, status="RUNNING")
                if STATE_TAG in run.data.tags:  # interrupted no more
                    self.client.delete_tag(run.info.run_id, STATE_TAG)
                self.logged = logged_steps(self.client, run.info.run_id)
                self.reused = True
                return run.info.run_id
            tags = {
                ROLE: "trial",
                SWEEP_ID: ctx.sweep_id,
                INSTANCE: ctx.instance,
                TRIAL_ID: self.trial_id,
                "mlflow.parentRunId": ctx.parent_id,
                "mlflow.runName": name or self.trial_id,
                "nrfer.sampled": ",".join(sorted(sampled)),  # the keys; values are params
                "nrfer.node_ip": node_ip(),
                "nrfer.worker_pid": str(os.getpid()),
                "nrfer.restarts": "0",
            }
            run_id = self.client.create_run(ctx.experiment_id, tags=tags).info.run_id
            items = [Param(k, str(v)[:6000]) for k, v in config.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(run_id, params=items[i : i + 100])
            return run_id

        run_id = with_retries(find_or_create, f"start run of trial {self.trial_id}", START_ATTEMPTS)
        if not isinstance(run_id, str):
            raise RuntimeError(f"trial {self.trial_id}: cannot create its MLflow run at {ctx.uri}")
        self.run_id = run_id
        return run_id

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
        pending, run_id = list(self.backlog), self.run_id
        ok: object = None
        if run_id:
            ok = with_retries(
                lambda: log_metrics(self.client, run_id, pending),
                f"log metrics of {self.trial_id}",
                attempts,
                delay_s,
                quiet=True,
            )
        if not ok:
            if self.record is not None:
                self._write_record()
            log.warning(
                "MLflow unreachable at %s: trial %s keeps %d metric values locally%s and "
                "retries with the next epoch",
                self.context.uri,
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
        if self.record is None:
            return
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
            write_atomic(self.record, "".join(json.dumps(r) + "\n" for r in rows))
        except OSError as e:
            log.warning("could not write the local metric record %s: %s", self.record, e)

    def log_artifacts(self, folder: Path, path: str) -> None:
        if (run_id := self.run_id) and folder.is_dir():
            with_retries(
                lambda: self.client.log_artifacts(run_id, str(folder), path),
                f"upload {folder}",
                attempts=1,
            )

    def set_tag(self, key: str, value: str) -> None:
        if run_id := self.run_id:
            with_retries(lambda: self.client.set_tag(run_id, key, value), f"tag {key}")

    def log_input(self, ident: dict) -> None:
        """The data this trial trains on (nrfer.data.identity), as the run's dataset input
        (MLflow keeps one per dataset and run, so a resumed trial does not add another)."""
        if run_id := self.run_id:
            inputs = [dataset_input(ident)]
            with_retries(lambda: self.client.log_inputs(run_id, inputs), "log the dataset")

    def log_dict(self, d: dict, path: str) -> None:
        if run_id := self.run_id:
            with_retries(lambda: self.client.log_dict(run_id, d, path), f"upload {path}")

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
        run_id = self.run_id
        if not run_id:
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

                def upload(f: Path = file, d: str = folder) -> None:
                    self.client.log_artifact(run_id, str(f), d)

                complete &= bool(with_retries(upload, f"upload {file}", FINAL_ATTEMPTS))
        if complete:
            with_retries(
                lambda: self.client.set_terminated(run_id, "FINISHED"),
                f"finish {self.trial_id}",
                FINAL_ATTEMPTS,
            )
