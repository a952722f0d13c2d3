"""What every part of the sweep's MLflow tracking shares: the store's URI, the tags runs are
found by, retries, chunked metric uploads, which epochs a run already has."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

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
