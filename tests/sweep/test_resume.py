"""Interrupt a real sweep mid-trial, after its first trial finished, then --resume it:
SIGINT (Tune saves its state and returns) and SIGKILL (the driver dies on the spot)."""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, tiny_space

pytestmark = pytest.mark.slow
EPOCHS = 5


def trial_runs(client, experiment="resume"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return [r for r in runs if r.data.tags.get("nrfer.role") == "trial"], [
        r for r in runs if r.data.tags.get("nrfer.role") == "sweep"
    ]


def launch(path, tmp_path, *extra):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "launch.py",
        "--space",
        str(path),
        "--storage",
        str(tmp_path / "storage"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / f"log{len(extra)}.txt", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the local Ray it starts is in it
    )


def metric_count(client, run) -> int:
    return len(client.get_metric_history(run.info.run_id, "val_acc"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_sweep_resumes_without_rerunning_or_duplicating(tmp_path, synthetic_root, sig):
    from mlflow.tracking import MlflowClient

    space = tiny_space(
        "resume",
        synthetic_root,
        seed=2,
        resizer={"enabled": True, "n": 4},  # epochs long enough to interrupt mid-trial
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "fifo", "max_epochs": EPOCHS},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(space))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")

    proc = launch(path, tmp_path)
    deadline, first_done = time.time() + 240, None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            runs, _ = trial_runs(client)
        except Exception:  # the store is being created
            continue
        if first_done is None and any(r.info.status == "FINISHED" for r in runs):
            first_done = time.time()
        # mid-trial: a later trial has logged an epoch, and Tune had time to save its state
        running = [r for r in runs if r.info.status == "RUNNING" and metric_count(client, r)]
        if first_done and running and time.time() - first_done > 3:
            break
    log0 = tmp_path / "log0.txt"
    assert proc.poll() is None, log0.read_text()[-3000:]
    if sig == signal.SIGINT:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=180) == 0, log0.read_text()[-3000:]
    else:
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; Ray's processes follow it
        proc.wait(timeout=30)
        time.sleep(2)
        try:  # whatever of Ray outlived it on this machine must not hold the next start up
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    runs, parents = trial_runs(client)
    assert len(parents) == 1
    # SIGINT: the driver closed everything; SIGKILL: runs stay as the dead driver left them
    if sig == signal.SIGINT:
        assert parents[0].info.status == "KILLED"
        assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    else:
        assert parents[0].info.status == "RUNNING"
        assert any(r.info.status == "RUNNING" for r in runs)
    finished = {r.data.tags["nrfer.trial_id"]: r for r in runs if r.info.status == "FINISHED"}
    assert len(finished) == 1
    interrupted = {r.data.tags["nrfer.trial_id"]: r for r in runs if r.info.status != "FINISHED"}
    epochs_before = {t: metric_count(client, r) for t, r in finished.items()}
    if sig == signal.SIGINT:  # resuming is the same from here on; the SIGKILL case does it
        assert "1 unfinished (continue with --resume)" in (tmp_path / "log0.txt").read_text()
        return

    proc = launch(path, tmp_path, "--resume")
    assert proc.wait(timeout=400) == 0, (tmp_path / "log1.txt").read_text()[-3000:]
    runs, parents_after = trial_runs(client)
    assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]
    assert parents_after[0].info.status == "FINISHED"
    ids = [r.data.tags["nrfer.trial_id"] for r in runs]
    assert len(ids) == 2 and len(set(ids)) == 2, ids  # no duplicate runs
    assert all(r.info.status == "FINISHED" for r in runs)
    for trial_id, before in finished.items():  # finished trials were not rerun
        after = next(r for r in runs if r.data.tags["nrfer.trial_id"] == trial_id)
        assert after.info.run_id == before.info.run_id
        assert (
            len(client.get_metric_history(after.info.run_id, "val_acc"))
            == epochs_before[trial_id]
            == EPOCHS
        )
        assert after.info.end_time == before.info.end_time
    for r in runs:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_acc")]
        assert sorted(set(steps)) == list(range(EPOCHS)), steps
    for trial_id, before in interrupted.items():  # continued in the same run
        after = next(r for r in runs if r.data.tags["nrfer.trial_id"] == trial_id)
        assert (
            after.info.run_id == before.info.run_id and int(after.data.tags["nrfer.restarts"]) >= 1
        )
