"""What the MLflow UI shows, piece by piece: run names, descriptions, dataset identities
(the real sweep is checked in test_sweep_e2e.py and test_sweep_sr.py)."""

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from nrfer.data.ferplus import read_ferplus
from nrfer.data.identity import identity, sr_identity
from sweep.tracking.ui import (
    MAX_NAME,
    dataset_input,
    run_name,
    sweep_description,
    trial_description,
    trial_number,
    tune_trial_name,
)


def test_run_names_say_the_number_and_what_was_sampled():
    sampled = {
        "model.backbone": "swin_tiny_patch4_window7_224.ms_in1k",
        "loss.name": "fpdls",
        "optim.lr": 3.1e-4,
    }
    assert run_name("t03", sampled, "762caea9") == "t03 swin_tiny fpdls lr=3.1e-4"
    sampled = {
        "model.resizer.enabled": True,
        "model.resizer.n": 8,
        "model.stn": False,
        "loss.gamma": 1.84,
        "data.sr.scale": 4,
        "model.backbone": "vit_base_patch16_384",
    }
    assert run_name("t12", sampled, "x") == "t12 resizer resizer.n=8 gamma=1.8 sr.scale=4 vit_base"
    assert run_name(None, {"optim.lr": 0.02}, "762caea9") == "762caea9 lr=0.02"
    long = run_name("t01", {f"a.k{i}": 1.234567 for i in range(20)}, "x")
    assert len(long) <= MAX_NAME and long.endswith(" …")
    # cut between words, never inside a value (it was `lr=2.…`)
    assert all(w.startswith("k") and w.endswith("=1.2") for w in long.split()[1:-1])
    demo = {
        "model.resizer.enabled": True,
        "model.resizer.n": 4,
        "model.stn": True,
        "loss.name": "fpdls",
        "loss.alpha": 0.6,
        "loss.gamma": 2.9,
        "optim.lr": 2.2e-3,
        "optim.weight_decay": 1.5e-4,
    }
    assert run_name("t08", demo, "x") == "t08 resizer resizer.n=4 stn fpdls alpha=0.6 gamma=2.9 …"
    # a study's seed comes right after the number, so no cut hides it
    study = {"model.backbone": "resnet14t", **demo, "train.seed": 1}
    assert run_name("t05", study, "x").split()[:2] == ["t05", "seed=1"]


def test_trial_numbers_come_from_tunes_counter():
    trial = SimpleNamespace(experiment_tag="3_loss.name=ce,optim.lr=0.001", trial_id="762caea9")
    assert tune_trial_name(trial) == "t03_762caea9"
    assert trial_number("t03_762caea9") == "t03"
    assert tune_trial_name(SimpleNamespace(experiment_tag="", trial_id="ab12")) == "ab12"
    assert trial_number("run_trial_ab12") is None


def test_descriptions_are_one_line_about_the_outcome():
    result = {"best_val_acc": 0.71234, "val_acc": 0.7, "training_iteration": 2}
    assert trial_description(result, "val_acc", 4, "stopped") == (
        "best val_acc 0.7123; stopped early by the scheduler after 2 of 4 epochs"
    )
    assert trial_description({**result, "training_iteration": 4}, "val_acc", 4, "finished") == (
        "best val_acc 0.7123 over 4 of 4 epochs"
    )
    assert "diverged" in trial_description(result, "val_acc", 4, "diverged")
    text = sweep_description(
        "demo",
        "demo.yaml",
        8,
        {"val_acc": 0.8, "name": "t03 fpdls lr=1e-3"},
        "val_acc",
        {"stopped early": 5, "failed": 0},
    )
    assert (
        text
        == "Sweep demo (demo.yaml): 8 trials (5 stopped early); best val_acc 0.8000: t03 fpdls lr=1e-3"
    )


def test_dataset_digest_follows_the_arrays_and_the_sr_cache(synthetic_root):
    data = read_ferplus(synthetic_root, "majority")
    ident = identity(data)
    assert ident["name"] == "ferplus-majority" and len(ident["digest"]) == 12
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    assert ident["profile"]["splits"] == sizes and 500 < sizes["train"] <= 600
    assert identity(read_ferplus(synthetic_root, "majority")) == ident  # read again: same
    # one pixel of one test face changed: another digest
    images = data.test.images.copy()
    images[7, 0, 3, 3] ^= 1
    changed = replace(data, test=replace(data.test, images=images))
    assert identity(changed)["digest"] != ident["digest"]
    assert identity(read_ferplus(synthetic_root, "probability"))["digest"] != ident["digest"]
    # an SR stage: the digest follows the cache's sealed manifest
    manifest = {"manifest_sha256": "a" * 64, "build_id": "b1"}
    x4 = sr_identity(ident, "bicubic", 4, manifest, [192, 192])
    rebuilt = sr_identity(
        ident, "bicubic", 4, {**manifest, "manifest_sha256": "c" * 64}, [192, 192]
    )
    assert x4["name"] == "ferplus-majority+sr-bicubic-x4"
    assert len({ident["digest"], x4["digest"], rebuilt["digest"]}) == 3
    assert x4["profile"]["sr"] == {"method": "bicubic", "scale": 4, "build_id": "b1"}
    # as MLflow gets it
    inp = dataset_input(x4)
    assert (inp.dataset.name, inp.dataset.digest) == (x4["name"], x4["digest"])
    assert json.loads(inp.dataset.profile)["image_size"] == [192, 192]
    assert np.array_equal(data.test.images, read_ferplus(synthetic_root, "majority").test.images)


def test_the_link_carries_the_saved_view_alone():
    """MLflow 3.17 ignores a shared view when the URL also holds a search facet: the link
    holds the view's key, the model-training switch and the table mode, nothing else."""
    import json
    import urllib.parse

    from sweep.tracking.ui import runs_link, trials_view, view_key

    link = runs_link("http://127.0.0.1:5000/", "7", view_key("abc123"))
    path, _, query = link.partition("?")
    assert path == "http://127.0.0.1:5000/#/experiments/7/runs"
    assert dict(urllib.parse.parse_qsl(query)) == {
        "workflowType": "machine_learning",
        "compareRunsMode": "TABLE",
        "viewStateShareKey": "nrfer-abc123",
    }
    view = json.loads(trials_view("s", "abc123", "val_loss", "min", ["optim.lr"], study=True))
    state = json.loads(view["state"])
    assert state["orderByKey"] == "metrics.`val_loss`" and state["orderByAsc"] is True
    assert state["selectedColumns"][:4] == [
        "metrics.`val_loss`",
        "metrics.`test_acc`",
        "params.`train.seed`",  # a study's seed: its own column
        "params.`optim.lr`",
    ]
    assert "params.`optim.lr`" in state["selectedColumns"]
    assert "tags.`nrfer.sweep_instance` = 'abc123'" in state["searchFilter"]
    # several objectives: each one a column, and the Pareto front's tag
    view = json.loads(
        trials_view("s", "abc", "val_acc", "max", [], objectives=["val_acc", "latency_ms"])
    )
    columns = json.loads(view["state"])["selectedColumns"]
    # the best epoch's val_acc only: the last epoch's beside it read as a contradiction
    assert columns[:2] == ["metrics.`best_val_acc`", "metrics.`latency_ms`"]
    assert "metrics.`val_acc`" not in columns
    assert "tags.`nrfer.front_rank`" in columns


def test_the_eta_counts_epochs_left_at_the_rate_since_the_first_trial(monkeypatch):
    """Two trials ended after 4 and 2 epochs (3 each on average), 8 epochs reported in the
    40 s since the first trial started: 0.2 epochs a second. With 2 running (2 epochs in)
    and 4 pending, 6 x 3 - 2 = 16 epochs are left: 80 s, whatever start-up took."""
    import time

    from sweep.runtime.console import Console

    console = Console(8, "val_acc", "max", 4, since=0.0)
    now = 1000.0
    monkeypatch.setattr(time, "time", lambda: now)
    console.first_start = now - 40
    console.epochs, console.ended_epochs = 8, [4, 2]
    assert console.eta(running=2, pending=4) == pytest.approx(80.0)
    assert Console(8, "val_acc", "max", 4).eta(running=2, pending=6) is None  # none ended
