"""SIGKILL a trial's worker process mid-epoch: Ray retries the trial from its last
checkpoint, the MLflow run continues (same run, no duplicate), and the metrics of every
epoch equal those of an unbroken run of the same config."""

import os
import signal
import threading
import time

import pytest

from helpers import tiny_space

pytestmark = pytest.mark.slow
EPOCHS = 5


def test_killed_worker_resumes_from_checkpoint_in_the_same_run(
    tmp_path, synthetic_root, run_tiny_sweep
):
    from mlflow.tracking import MlflowClient

    from nrfer.data import load_data
    from nrfer.train import fit
    from sweep.spec.space import apply_params, parse_space

    space = tiny_space(
        "workerkill",
        synthetic_root,
        resizer={"enabled": True, "n": 4},
        search={"optim.lr": {"choice": [0.003]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": EPOCHS},
        budget={"num_samples": 1, "max_concurrent": 1},
    )
    spec = parse_space(space, "workerkill.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    killed: dict = {}

    def killer() -> None:
        """Once epochs 0 and 1 are logged (so a checkpoint exists), kill the worker."""
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            time.sleep(0.1)
            try:
                exp = client.get_experiment_by_name("workerkill")
                runs = client.search_runs([exp.experiment_id], "tags.`nrfer.role` = 'trial'")
                if runs and len(client.get_metric_history(runs[0].info.run_id, "val_acc")) >= 2:
                    pid = int(runs[0].data.tags["nrfer.worker_pid"])
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, run_id=runs[0].info.run_id)
            except Exception:  # the store or the run does not exist yet
                continue

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = run_tiny_sweep(space, uri, num_cpus=1)
    thread.join(timeout=5)
    assert killed, "the worker was never killed"
    assert summary.num_trials == 1 and summary.num_errors == 0

    runs = client.search_runs(
        [client.get_experiment_by_name("workerkill").experiment_id],
        "tags.`nrfer.role` = 'trial'",
    )
    assert len(runs) == 1  # no duplicate run for the retried trial
    run = runs[0]
    assert run.info.run_id == killed["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["nrfer.restarts"] == "1"
    assert int(run.data.tags["nrfer.worker_pid"]) != killed["pid"]
    assert int(run.data.tags["nrfer.resumed_after_epoch"]) >= 0  # continued, not restarted

    # the same config trained without interruption, in this process
    cfg = apply_params(spec.base_config(), {"optim.lr": 0.003})
    cfg.train.num_threads = 1
    unbroken = fit(cfg, data=load_data(cfg.data), out_dir=tmp_path / "unbroken").history
    assert len(unbroken) == EPOCHS
    for name in ("val_acc", "val_loss", "train_loss"):
        logged: dict[int, set] = {}
        for m in client.get_metric_history(run.info.run_id, name):
            logged.setdefault(m.step, set()).add(round(m.value, 5))
        assert sorted(logged) == list(range(EPOCHS)), (name, logged)
        for epoch, row in enumerate(unbroken):
            assert logged[epoch] == {round(row[name], 5)}, (name, epoch, logged[epoch], row)
