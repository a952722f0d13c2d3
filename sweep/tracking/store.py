"""What every part of the sweep's MLflow tracking shares: the store's URI, the tags runs are
found by, retries, chunked metric uploads, which epochs a run already has."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DIVERGED = "FloatingPointError"  # what nrfer.train.fit raises on a non-finite loss
ROLE, SWEEP_ID, TRIAL_ID = "nrfer.role", "nrfer.sweep_id", "nrfer.trial_id"
# one sweep instance: a name is reused by later sweeps (other storage, or after rm -rf), an
# instance never; the driver only ever touches runs that carry its own instance id
INSTANCE = "nrfer.sweep_instance"
# a trial run closed because the sweep was interrupted (MLflow: KILLED): `--resume`
# continues it; the tag goes when it runs again
STATE_TAG, INTERRUPTED = "nrfer.state", "interrupted (resume the sweep with --resume)"
log = logging.getLogger("nrfer.sweep")
T = TypeVar("T")
FINAL_ATTEMPTS = 8  # at a trial's end: about a minute of backoff before giving up on MLflow
# at a trial's start: about two minutes, so a short outage is waited out instead of failing
# the trial (and spending Ray's retries of it) before it trains
START_ATTEMPTS = 9
# A trial worker's own HTTP retries stay short: we retry (and keep a backlog) ourselves, so a
# server that is away does not hold up training. Values the user set are kept.
HISTORY_FILE = "history.json"  # in each trial checkpoint: its epochs' metrics, as logged
EPOCH_KEYS = ("val_acc", "val_macro_f1", "val_loss", "train_loss", "best_val_acc")
WORKER_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # not two "View run ... at" lines per trial in the sweep's terminal (its workers' stdout)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def tracking_uri(cli_value: str | None = None) -> str:
    """The URI from the CLI, the environment or the default, with a relative SQLite path
    made absolute: trial workers run in other folders and must find the same file."""
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/") and ":memory:" not in uri:
        uri = prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def redact(uri: str) -> str:
    """`uri` with any `user:password@` replaced by `***@`: for everything printed or stored."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def move_credentials_to_env(uri: str) -> str:
    """An http(s) URI with `user:password@` in it: the credentials go to MLflow's own
    MLFLOW_TRACKING_USERNAME / _PASSWORD variables (inherited by local Ray workers) and the URI
    without them is returned, so that nothing printed, pickled or logged carries them."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return uri
    if parts.username:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username)
    if parts.password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a SQLite store, in
    `<store>-artifacts/` (`mlflow.db` -> `mlflow-artifacts/`), whatever folder the sweep
    was started from (MLflow's default is ./mlruns of the current folder); a server's own
    artifact store otherwise (None)."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / f"{db.stem}-artifacts").as_uri()


_OPENED: set[str] = set()  # SQLite stores this process created or checked


def open_sqlite_store(uri: str, db: Path, where: str = "tracking URI") -> None:
    """Create (or upgrade-check) the SQLite store `db` once per process, under an exclusive
    lock on `<db>.lock` beside it: two processes opening a new store at once (a sweep
    starting while `nrfer ui` or a script opens it) otherwise race in MLflow's schema
    creation, and some die (issue 42: 6 of 9 concurrent first opens failed). A store whose
    schema is newer than this MLflow's is a clear error, not MLflow's advice to upgrade it."""
    if uri in _OPENED:
        return
    import fcntl

    with open(db.with_name(db.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            newer_schema_check(db, where)
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(uri, artifact_root(uri))
            store.engine.dispose()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _OPENED.add(uri)


def ensure_store(uri: str) -> None:
    """Before a process first uses the store `uri`: a SQLite one created or checked under
    its lock (`open_sqlite_store`); nothing to do for a server."""
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        open_sqlite_store(uri, Path(uri.removeprefix("sqlite:///")))


def newer_schema_check(db: Path, where: str) -> None:
    """A ValueError when the SQLite store `db` has a schema revision this MLflow does not
    know (a newer MLflow wrote it)."""
    import sqlite3

    if not db.is_file() or db.stat().st_size == 0:
        return
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return  # not initialised yet (or not MLflow's): MLflow says what it finds
    if row is None:
        return
    import mlflow
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    known = {rev.revision for rev in script.walk_revisions()}
    if row[0] not in known:
        raise ValueError(
            f"{where} {db}: the store's schema (revision {row[0]}) is newer than this "
            f"MLflow {mlflow.__version__} knows; a newer MLflow wrote it. Use that MLflow "
            "version here (pip install 'mlflow==<it>'), or another store; never downgrade the file"
        )


def check_tracking_uri(uri: str, where: str = "tracking URI", timeout_s: float = 5.0) -> str:
    """Fail in seconds, before any data load or Ray start, on a URI MLflow cannot use: an
    unknown scheme, a SQLite file in a missing folder, a server that does not answer."""
    if uri == "databricks" or uri.startswith("databricks:"):
        return uri
    scheme = urlsplit(uri).scheme.split("+")[0]
    shown = redact(uri)
    if scheme == "file" or not scheme:
        raise ValueError(
            f"{where} {shown!r}: MLflow 3's file store is in maintenance mode; use a database, "
            "e.g. sqlite:///mlflow.db, or an http(s):// tracking server"
        )
    if scheme not in URI_SCHEMES:
        raise ValueError(
            f"{where} {shown!r}: unknown scheme {scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in URI_SCHEMES)
        )
    if scheme == "sqlite" and ":memory:" not in uri:
        db = Path(uri.removeprefix("sqlite:///"))
        folder = db.parent
        if not folder.is_dir():
            raise ValueError(f"{where} {shown!r}: folder {folder} does not exist")
        if db.is_dir():
            raise ValueError(
                f"{where} {shown!r}: {db} is a folder; give the database file in it, e.g. "
                f"sqlite:///{db / 'mlflow.db'}"
            )
        if (db.exists() and not os.access(db, os.W_OK)) or not os.access(folder, os.W_OK):
            raise ValueError(
                f"{where} {shown!r}: {db if db.exists() else folder} is read-only; SQLite needs "
                "to write the file and its folder (journal): fix the permissions or use another store"
            )
        if db.exists():  # check (and migrate) it now; a new one is made where it is first used
            open_sqlite_store(uri, db, where)
    if scheme == "postgresql":
        check_postgres(uri, f"{where} {shown!r}", timeout_s)
    if scheme in ("http", "https"):
        parts = urlsplit(uri)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        base = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")  # no credentials
        url = base + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                r.read(64)
        except urllib.error.HTTPError as e:
            if e.code >= 500:  # 401/403/404: it answers (auth or no /health); MLflow says more
                raise ValueError(f"{where} {shown!r}: the server answered HTTP {e.code}") from None
        except (OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise ValueError(
                f"{where} {shown!r}: no MLflow server answers within {timeout_s:.0f} s ({reason}); "
                "start one (mlflow server --host 127.0.0.1) or check the address"
            ) from None
        check_server_artifacts(base, parts, f"{where} {shown!r}", timeout_s)
    return uri


def check_postgres(uri: str, what: str, timeout_s: float) -> None:
    """A PostgreSQL store answers, takes the credentials and has the database: connected
    once (nothing is written), else one line with PostgreSQL's own reason."""
    import psycopg  # a dependency: SQLAlchemy's default postgresql:// driver

    parts = urlsplit(uri)
    dsn = urlunsplit(parts._replace(scheme="postgresql"))  # postgresql+psycopg:// -> libpq's
    try:
        psycopg.connect(dsn, connect_timeout=max(int(timeout_s), 1)).close()
    except psycopg.Error as e:
        reason = " ".join(str(e).split())  # libpq's lines; it never repeats the password
        if parts.password:
            reason = reason.replace(unquote(parts.password), "***")
        raise ValueError(f"{what}: PostgreSQL refused: {reason}") from None


def check_server_artifacts(base: str, parts: SplitResult, what: str, timeout_s: float) -> None:
    """The tracking server's own artifact store (its --artifacts-destination, e.g. an S3
    bucket) answers: its root is listed through the server (read-only). A missing bucket,
    refused credentials or an endpoint that does not answer is said now, not as a 500 at
    the first checkpoint of every trial. A server that does not proxy artifacts
    (--no-serve-artifacts) or asks for a login is left to MLflow. `base`: the server's URL
    without credentials; `parts`: the URI as given (its login, if any, is sent)."""
    import base64

    request = urllib.request.Request(f"{base}/api/2.0/mlflow-artifacts/artifacts?path=")
    if parts.username:
        login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s * 3) as r:
            r.read(64)
        return
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read(2000).decode("utf-8", "replace")
    except (OSError, ValueError):
        return  # /health answered a moment ago: a slow listing is not a refusal
    try:
        message = str(json.loads(body).get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    if message.startswith("Failed to list artifacts"):  # the artifact store's own answer
        raise ValueError(f"{what}: the server's artifact store refused: {message}")
    if code >= 500:
        raise ValueError(
            f"{what}: the server failed (HTTP {code}) to list its artifact store: is its "
            "--artifacts-destination reachable from the server (an S3 endpoint that does not "
            "answer: MLFLOW_S3_ENDPOINT_URL)? Its log says more"
        )


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


def find_runs(
    client: MlflowClient, experiment_id: str, tags: dict[str, str], limit: int | None = None
) -> list:
    """Every run with these tags (`limit`: at most that many), page by page: a search
    returns at most one page, however many runs match."""
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs: list = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            max_results=min(limit or 1000, 1000),
            page_token=token,
        )
        runs += page
        token = page.token
        if not token or (limit and len(runs) >= limit):
            return runs[:limit] if limit else runs


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


def check_experiment(uri: str, name: str) -> None:
    """A sweep's MLflow experiment must not be in the store's trash (deleted in the UI):
    MLflow refuses both to log to it and to create another of that name."""
    from nrfer.config import ConfigError

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return  # no store yet (nothing is created here: a refusal later leaves no file)
    ensure_store(uri)
    exp = MlflowClient(uri).get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise ConfigError(
            f"MLflow experiment {name!r} at {redact(uri)} is deleted (in the trash): restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or give this "
            "sweep another --name"
        )


def artifact_text(client, run_id: str, path: str) -> str:
    """One artifact's text, read through a folder removed at once (MLflow's download without
    a destination leaves a temp folder behind per call)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nrfer-artifact-") as tmp:
        return Path(client.download_artifacts(run_id, path, tmp)).read_text()
