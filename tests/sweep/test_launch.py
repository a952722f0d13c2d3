import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO, tiny_space


def run(*args):
    return subprocess.run(
        [sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_missing_ferplus_files_stop_before_ray_and_point_to_the_demo():
    p = run("--space", "ferplus_vit.yaml")
    assert p.returncode == 2
    assert "fer2013.csv" in p.stderr and "data/ferplus" in p.stderr and "demo.yaml" in p.stderr
    assert "ray" not in p.stdout.lower()
    dry = run("--space", "ferplus_vit.yaml", "--dry-run")  # the check people script
    assert dry.returncode == 2 and dry.stderr == p.stderr


def test_microsoft_folders_without_labels_are_named_before_anything_runs(tmp_path):
    import launch
    from nrfer.data import DataFormatError
    from sweep.spec.space import load_space

    (tmp_path / "FER2013Train").mkdir()
    space = yaml.safe_load((REPO / "search_spaces" / "ferplus_vit.yaml").read_text())
    space["data"]["root"] = str(tmp_path)
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    with pytest.raises(DataFormatError, match="FER2013Train/label.csv, FER2013Valid/label.csv"):
        launch.check_data(load_space(tmp_path / "s.yaml"))


def test_dry_run_prints_parameters_plan_and_samples():
    p = run("--space", "demo.yaml", "--dry-run", "--num-samples", "5")
    assert p.returncode == 0, p.stderr
    assert "loss.gamma" in p.stdout and "when {'loss.name': ['focal', 'fpdls']}" in p.stdout
    assert "budget: 5 trials, 2 at a time" in p.stdout
    assert p.stdout.count("sample ") == 3


def test_bad_space_name_is_a_clear_error():
    p = run("--space", "nope.yaml")
    assert (
        p.returncode == 2
        and "search space 'nope.yaml' not found" in p.stderr
        and "demo.yaml" in p.stderr
    )


def test_unwritable_storage_stops_before_ray_starts():
    p = run("--space", "demo.yaml", "--storage", "/proc/nrfer-cannot-write-here")
    assert p.returncode == 2
    assert "storage path /proc/nrfer-cannot-write-here is not writable" in p.stderr
    assert "Started a local Ray instance" not in p.stdout + p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("resources", [{"cpu": 1, "gpu": 1}], ids=["gpu"])
def test_resources_larger_than_the_cluster_stop_before_any_trial(
    tmp_path, synthetic_root, resources
):
    space = tiny_space(
        "toobig",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "fifo", "max_epochs": 1},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    space["resources"] = resources
    path = tmp_path / "toobig.yaml"
    path.write_text(yaml.safe_dump(space))
    db = tmp_path / "mlflow.db"
    p = run(
        "--space", str(path), "--storage", str(tmp_path / "st"), "--tracking-uri", f"sqlite:///{db}"
    )
    assert p.returncode == 2, p.stdout[-2000:] + p.stderr[-2000:]
    key, name = ("gpu", "GPU") if "gpu" in resources else ("cpu", "CPU")
    assert f"toobig.yaml: resources.{key}: a trial asks for {resources[key]} {name}" in p.stderr
    assert "the Ray cluster has" in p.stderr
    assert not db.exists()  # no MLflow run was opened
    assert not (tmp_path / "st" / "toobig").exists()  # no trial ran


def started_sweep(tmp_path, synthetic_root, status):
    """A space file and the state a sweep of it left under `storage` (as the driver writes it)."""
    from sweep.runtime.ledger import Ledger
    from sweep.spec.space import load_space

    space = tiny_space(
        "started",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    path = tmp_path / "started.yaml"
    path.write_text(yaml.safe_dump(space))
    Ledger(tmp_path / "st" / "started").write_sweep(
        load_space(path).to_dict(), status, num_trials=2
    )
    return path, space


def test_resume_with_another_space_is_refused_naming_what_changed(tmp_path, synthetic_root):
    path, space = started_sweep(tmp_path, synthetic_root, "INTERRUPTED")
    db = tmp_path / "mlflow.db"
    common = ("--storage", str(tmp_path / "st"), "--tracking-uri", f"sqlite:///{db}")
    p = run("--space", str(path), "--resume", "--num-samples", "3", *common)
    assert p.returncode == 2
    assert "budget.num_samples: 2 -> 3" in p.stderr and "--force-resume" in p.stderr
    space["search"]["optim.lr"] = {"loguniform": [1e-5, 1e-2]}
    path.write_text(yaml.safe_dump(space))
    p = run("--space", str(path), "--resume", *common)
    assert p.returncode == 2 and "search.optim.lr.loguniform: [0.0001, 0.01] -> [1e-05, 0.01]" in (
        p.stderr
    )
    p = run("--space", str(path), *common)  # not resuming: the name is taken
    assert p.returncode == 2 and "already exists" in p.stderr and "--resume" in p.stderr
    assert not db.exists()  # refused before anything was opened


def test_resume_of_a_finished_sweep_says_so_and_touches_nothing(tmp_path, synthetic_root):
    path, _ = started_sweep(tmp_path, synthetic_root, "FINISHED")
    state = tmp_path / "st" / "started" / "nrfer_ledger" / "sweep.yaml"
    before = state.read_text()
    db = tmp_path / "mlflow.db"
    p = run(
        "--space", str(path), "--resume", "--storage", str(tmp_path / "st"),
        "--tracking-uri", f"sqlite:///{db}",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "sweep 'started' already finished (2 trials" in p.stdout
    assert state.read_text() == before and not db.exists()
    assert "Started a local Ray instance" not in p.stdout + p.stderr


def test_weights_for_every_searched_backbone_are_checked_before_ray(tmp_path, synthetic_root):
    import torch

    space = tiny_space(
        "weights",
        synthetic_root,
        search={"model.backbone": {"choice": ["resnet10t", "resnet14t"]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    space["fixed"]["model"] = {"pretrained": "weights", "input_size": 32}
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump(space))
    (tmp_path / "weights").mkdir()
    torch.save({}, tmp_path / "weights" / "resnet10t.pth")

    def launch(*extra):
        return subprocess.run(
            [sys.executable, str(REPO / "launch.py"), "--space", str(path), *extra],
            cwd=tmp_path,  # the relative folder means this folder
            capture_output=True,
            text=True,
            timeout=120,
        )

    p = launch("--storage", str(tmp_path / "st"))
    assert p.returncode == 2 and "no weights for 1 of the 2 backbones" in p.stderr
    assert "'resnet14t'" in p.stderr and "resnet14t.safetensors" in p.stderr
    assert not (tmp_path / "st" / "weights").exists()
    dry = launch("--dry-run")  # the check people script fails as the run does, same words
    assert dry.returncode == 2 and dry.stderr == p.stderr
    torch.save({}, tmp_path / "weights" / "resnet14t.safetensors")
    p = launch("--dry-run")
    assert p.returncode == 0, p.stderr
    assert "resnet10t" in p.stdout and str(Path("weights") / "resnet14t.safetensors") in p.stdout


@pytest.mark.slow
def test_force_resume_continues_the_sweep_as_it_was_started(tmp_path, synthetic_root):
    path, _ = started_sweep(tmp_path, synthetic_root, "INTERRUPTED")  # killed before Tune saved
    db = tmp_path / "mlflow.db"
    p = run(
        "--space", str(path), "--resume", "--num-samples", "3", "--force-resume",
        "--storage", str(tmp_path / "st"), "--tracking-uri", f"sqlite:///{db}",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (
        "--force-resume: continuing 'started' as started; ignored: budget.num_samples: 2 -> 3"
        in p.stdout
    )
    assert "sweep started: 2 trials" in p.stdout  # the stored num_samples, not the new one
    state = yaml.safe_load(
        (tmp_path / "st" / "started" / "nrfer_ledger" / "sweep.yaml").read_text()
    )
    assert state["status"] == "FINISHED" and state["spec"]["budget"]["num_samples"] == 2


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_4(tmp_path, synthetic_root):
    space = tiny_space(
        "all-fail",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        budget={"num_samples": 1, "max_concurrent": 1, "max_failures": 0},
    )
    space["fixed"]["train"]["device"] = "cuda:9"  # passes every check, then fails in the trial
    path = tmp_path / "all-fail.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    p = run(
        "--space", str(path), "--storage", str(tmp_path / "st"),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    assert p.returncode == 4, p.stdout[-2000:] + p.stderr[-2000:]
    assert "none of its 1 trial(s) completed" in p.stderr


def test_the_first_line_comes_within_two_seconds_then_each_phase_with_its_time():
    """Timed by this test's own clock from the process's start: the first line names what
    runs before any slow import; the checks' line follows with its duration."""
    import time

    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--space", "demo.yaml", "--dry-run"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        took = time.monotonic() - t0
        second = proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    assert first == "nrfer sweep: dry run of demo.yaml\n" and took < 2.0, (first, took)
    assert re.match(
        r"^\[0m\d\ds\] space, data, weights, storage and store checked: demo, 8 trials "
        r"\(\d+\.\d s\)$",
        second,
    ), second
