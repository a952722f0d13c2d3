"""The faults a cluster has, each injected mid-sweep in the production stack (PostgreSQL, S3,
MLflow server, two Ray nodes; tests/procs.py Stack): PostgreSQL, the S3 server or the MLflow
server restarted, the Ray worker node lost (its raylet SIGKILLed), the driver SIGKILLed and
the sweep `--resume`d. Each ends with every trial finished, each epoch logged exactly once
in PostgreSQL, the kept checkpoints in the bucket and the ledger consistent.

Minutes each, so `make test-cluster` runs them (not `make test`)."""

import signal
import subprocess
import time

import pytest
import yaml

from helpers import tiny_space
from procs import BIN, Stack

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
PG_SECRET = "pg-pw-3317"
EPOCHS, TRIALS = 6, 4
FAULTS = ["postgres", "s3", "mlflow", "worker node", "driver"]


def epochs_logged(stack) -> dict[str, int]:
    """Trial run -> val_acc rows in PostgreSQL (empty while it is down)."""
    import psycopg

    try:
        with psycopg.connect(stack.pg.dsn(), connect_timeout=2) as db:
            rows = db.execute(
                "SELECT m.run_uuid, count(*) FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid"
                " WHERE m.key = 'val_acc' AND t.key = 'nrfer.role' AND t.value = 'trial'"
                " GROUP BY m.run_uuid"
            ).fetchall()
    except psycopg.Error:
        return {}
    return dict(rows)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_mid_sweep_ends_with_every_epoch_logged_once(fault, tmp_path, synthetic_root):
    import psycopg

    from sweep.runtime.ledger import FINISHED, Ledger

    stack = Stack(tmp_path, PG_SECRET)
    try:
        space = tiny_space(
            "faults",
            synthetic_root,
            search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
            scheduler={"max_epochs": EPOCHS},  # the shipped rule (adaptive)
            budget={"num_samples": TRIALS, "max_concurrent": 2, "max_failures": 3},
        )
        path = tmp_path / "faults.yaml"
        path.write_text(yaml.safe_dump(space))
        storage = tmp_path / "storage"
        cmd = [str(BIN / "nrfer"), "sweep", "--space", str(path), "--address", stack.address]
        cmd += ["--tracking-uri", stack.uri, "--storage", str(storage)]
        log = tmp_path / "driver.log"

        def launch(*extra):
            return subprocess.Popen(
                [*cmd, *extra],
                cwd=tmp_path,
                env=stack.env,
                stdout=open(log, "a"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        driver = launch()
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None:  # mid-sweep: 2 epochs in
            if any(n >= 2 for n in epochs_logged(stack).values()):
                break
            time.sleep(0.5)
        assert driver.poll() is None, log.read_text()[-3000:]
        if fault == "postgres":
            stack.pg.stop()
            time.sleep(10)
            stack.pg.start()
        elif fault == "s3":
            stack.s3.stop()
            time.sleep(10)
            stack.s3.start()
        elif fault == "mlflow":
            from procs import stop

            stop(stack.mlflow)
            time.sleep(10)
            stack.start_mlflow()
        elif fault == "worker node":
            stack.kill_worker_node()
        elif fault == "driver":
            import os

            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
            driver = launch("--resume")
        assert driver.wait(timeout=600) == 0, log.read_text()[-4000:]

        with psycopg.connect(stack.pg.dsn()) as db:
            runs = db.execute(
                "SELECT r.run_uuid, r.status, t.value FROM runs r JOIN tags t"
                " ON t.run_uuid = r.run_uuid WHERE t.key = 'nrfer.role'"
            ).fetchall()
            trials = {run for run, _, role in runs if role == "trial"}
            assert sorted(role for _, _, role in runs) == ["sweep"] + ["trial"] * TRIALS, runs
            assert {status for _, status, _ in runs} == {"FINISHED"}, runs
            for run in trials:
                for key in ("val_acc", "train_loss"):
                    rows = db.execute(
                        "SELECT step, value, timestamp FROM metrics WHERE run_uuid = %s"
                        " AND key = %s ORDER BY step, timestamp",
                        (run, key),
                    ).fetchall()
                    steps = [step for step, _, _ in rows]
                    assert steps == list(range(EPOCHS)), (fault, run, key, rows)
            if fault == "worker node":  # a trial of the lost node continued on the head
                moved = db.execute(
                    "SELECT count(*) FROM tags WHERE key = 'nrfer.resumed_after_epoch'"
                ).fetchone()[0]
                assert moved >= 1
        kept = [k for k in stack.s3.keys("mlflow/") if k.endswith("/artifacts/checkpoint/best.pt")]
        assert len(kept) == 3, kept  # tracking.keep_checkpoints: the top 3
        ledger = Ledger(storage / "faults")
        assert ledger.read_sweep()["status"] == FINISHED
        assert len(ledger.completed()) == TRIALS
        assert not ledger.unretained() and not ledger.unremoved()
        assert not list((storage / "faults").rglob("checkpoint_*"))  # nothing left behind
    finally:
        stack.close()
