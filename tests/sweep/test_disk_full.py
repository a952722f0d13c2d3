"""A disk filling up mid-sweep (ASHA): the storage folder, or the MLflow store's folder, on
a real tmpfs that the test fills during the first trial. The sweep stops with one line
naming the folder and its free space, exit 3 (resumable), every run closed as interrupted
or finished (none RUNNING or FAILED), nothing earlier lost; after space is freed, `--resume`
completes it with each epoch logged once. Skipped where mounting is not permitted."""

import os
import subprocess

import pytest
from test_resume import EPOCHS, SCHEDULERS, Sweep, write_space

pytestmark = pytest.mark.slow
SIZE_MIB = 320


def mount(where) -> None:
    where.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m", "tmpfs", str(where)]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")


def fill(folder, leave_mib: int) -> None:
    """A file that leaves `leave_mib` MiB free on `folder`'s file system."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    size = max(0, free - leave_mib * 2**20)
    with open(folder / "filler", "wb") as f:
        for _ in range(size // 2**20):
            f.write(b"\0" * 2**20)


@pytest.mark.parametrize("full", ["storage", "store"])
def test_a_disk_filling_mid_sweep_stops_it_resumably(full, tmp_path, synthetic_root):
    disk = tmp_path / "disk"
    mount(disk)
    try:
        space = write_space(tmp_path, synthetic_root, SCHEDULERS["asha"], num_samples=2)
        if full == "storage":
            sweep = Sweep(tmp_path, space, storage="disk")
        else:
            sweep = Sweep(tmp_path, space, store=disk / "mlflow.db")
        proc = sweep.launch()
        # the first trial has a checkpoint of its first epoch: then the disk fills
        sweep.wait(proc, lambda t: any(n >= 1 for _, n in t.values()))
        fill(disk, leave_mib=24)
        assert proc.wait(timeout=240) == 3, sweep.log()
        log = sweep.log()
        what = "storage" if full == "storage" else "the MLflow store's folder"
        assert f"error: {what} {disk}" in log and "MiB free (under 64 MiB)" in log, log
        assert "continue with --resume" in log and "Traceback" not in log
        trials, parents = sweep.runs()
        assert len(parents) == 1 and parents[0].info.status == "KILLED"
        states = {r.info.status for r in trials.values()}
        assert states <= {"FINISHED", "KILLED"} and "KILLED" in states, states
        for r in trials.values():
            if r.info.status == "KILLED":
                assert r.data.tags["nrfer.state"].startswith("interrupted")
        logged = {t: sweep.steps(r) for t, r in trials.items()}
        assert all(steps for steps in logged.values())  # the epochs before the stop kept

        (disk / "filler").unlink()
        assert sweep.launch("--resume").wait(timeout=400) == 0, sweep.log()
        runs = sweep.assert_complete(2, "asha")
        for t, steps in logged.items():  # nothing logged before the stop was lost
            assert sweep.steps(runs[t])[: len(steps)] == steps
        assert max(len(sweep.steps(r)) for r in runs.values()) == EPOCHS
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
