"""The MLflow server goes away mid-sweep and comes back: training goes on, each trial keeps
its metrics locally meanwhile, catches up, and nothing logged is lost."""

import threading
import time

import pytest

from helpers import tiny_space
from procs import free_port, mlflow_server, stop

pytestmark = pytest.mark.slow
EPOCHS = 6


def test_server_outage_mid_sweep_loses_no_metric(tmp_path, synthetic_root, run_tiny_sweep):
    from mlflow.tracking import MlflowClient

    space = tiny_space(
        "outage",
        synthetic_root,
        resizer={"enabled": True, "n": 4},
        search={"optim.lr": {"choice": [0.003]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": EPOCHS},
        budget={"num_samples": 1, "max_concurrent": 1},
    )
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    client = MlflowClient(uri)
    records = tmp_path / "storage" / "outage" / "mlflow_backlog"
    server = {"proc": mlflow_server(tmp_path, port)}
    seen: dict = {}

    def outage() -> None:
        """After the first epoch is logged, stop the server until a trial has kept metrics
        locally (so training went on without it), then start it again on the same port."""
        deadline = time.time() + 240
        while time.time() < deadline:
            time.sleep(0.1)
            try:
                exp = client.get_experiment_by_name("outage")
                runs = client.search_runs([exp.experiment_id], "tags.`nrfer.role` = 'trial'")
                if runs and client.get_metric_history(runs[0].info.run_id, "val_acc"):
                    break
            except Exception:
                continue
        stop(server["proc"])
        seen["stopped_at"] = time.time()
        # A record is appended to as the trial logs, so wait for an epoch's val_acc in it
        # (the first lines written can be the epoch's system metrics).
        while time.time() < deadline:
            seen["record"] = [p.read_text() for p in records.glob("*.jsonl")]
            if any('"key": "val_acc"' in text for text in seen["record"]):
                break
            time.sleep(0.05)
        server["proc"] = mlflow_server(tmp_path, port)

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    try:
        summary = run_tiny_sweep(space, uri, num_cpus=1)
        thread.join(timeout=120)
        assert seen.get("record"), "no trial kept metrics locally while the server was away"
        assert summary.num_errors == 0

        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id])
        trials = [r for r in runs if r.data.tags.get("nrfer.role") == "trial"]
        parent = next(r for r in runs if r.data.tags.get("nrfer.role") == "sweep")
        assert len(trials) == 1 and trials[0].info.status == "FINISHED"
        assert parent.info.status == "FINISHED"
        run_id = trials[0].info.run_id
        assert any('"key": "val_acc"' in text and run_id in text for text in seen["record"])
        for name in ("val_acc", "val_loss", "train_loss", "val_macro_f1"):
            steps = sorted({m.step for m in client.get_metric_history(run_id, name)})
            assert steps == list(range(EPOCHS)), (name, steps)
        assert "checkpoint/best.pt" in {a.path for a in client.list_artifacts(run_id, "checkpoint")}
        assert not list(records.glob("*.jsonl"))  # caught up: no local record left
    finally:
        stop(server["proc"])
