"""The SQLite store is opened safely (issue 42, part 3): processes that open a new store at
once all succeed (plain MLflow 3.17: 1 of 9 did here, the others died in its schema
creation), and a store written by a newer MLflow is named as such."""

import sqlite3
import subprocess
import sys
import time

import pytest

from helpers import REPO

OPEN = """
import sys, time
from sweep.tracking.store import check_tracking_uri, ensure_store
from mlflow.tracking import MlflowClient
uri, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
check_tracking_uri(uri)
ensure_store(uri)  # where a sweep, `nrfer ui` or a command first uses it
MlflowClient(uri).search_experiments()
print("ok")
"""


def test_concurrent_first_opens_of_a_new_store_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start = time.time() + 6  # every process imported MLflow by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, uri, str(start)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(
        p.returncode == 0 and out.strip().endswith("ok") for p, out in zip(procs, outs, strict=True)
    ), outs
    assert (tmp_path / "mlflow.db.lock").exists()


def test_a_store_from_a_newer_mlflow_is_named(tmp_path):
    from sweep.tracking import store

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    store.ensure_store(uri)  # created here, at this MLflow's schema
    with sqlite3.connect(db) as con:
        con.execute("UPDATE alembic_version SET version_num = 'f00dfeedbeef'")
    store._OPENED.discard(uri)
    with pytest.raises(
        ValueError, match=r"schema \(revision f00dfeedbeef\) is newer than this MLflow"
    ):
        store.check_tracking_uri(uri, "--tracking-uri")
