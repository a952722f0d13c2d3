"""Shared fixtures: small FER+ files in the real formats, written per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist (`make test` runs one worker per core): one thread each, since two
# workers' thread pools on two cores would spin against each other; and each worker's local
# Ray clusters keep their session files (and Unix sockets) in a temp folder of their own.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    import tempfile

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["NRFER_RAY_TMP"] = str(
        Path(tempfile.gettempdir()) / f"nrfer-ray-{os.getuid()}-{worker}"
    )
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic FER+ set in the Microsoft format (read through the real reader)."""
    from nrfer.data.synthetic import write_ferplus

    return write_ferplus(
        tmp_path_factory.mktemp("synth") / "ferplus", seed=3, n_train=600, n_val=150, n_test=150
    )


@pytest.fixture(scope="session")
def tiny_config_dict(synthetic_root) -> dict:
    """A trial config that trains in seconds on 2 cores."""
    return {
        "data": {
            "dataset": "synthetic",
            "root": str(synthetic_root),
            "synthetic": {"seed": 3, "n_train": 600, "n_val": 150, "n_test": 150},
        },
        "model": {
            "backbone": "vit_tiny_patch16_224",
            "backbone_args": {
                "img_size": 32,
                "patch_size": 8,
                "embed_dim": 48,
                "depth": 2,
                "num_heads": 2,
            },
            "resizer": {"enabled": True, "n": 4, "r": 1},
        },
        "loss": {"name": "fpdls"},
        "optim": {"name": "adamw", "lr": 0.003, "weight_decay": 0.01},
        "scheduler": {"name": "cosine", "warmup_epochs": 0},
        "train": {"epochs": 3, "batch_size": 32, "seed": 0, "device": "cpu"},
    }


@pytest.fixture
def run_tiny_sweep(tmp_path, monkeypatch):
    """Run a sweep of `space` (a dict) for real: the space written to tmp_path, the working
    folder there (the SQLite store, its artifacts in ./mlflow-artifacts), a local Ray on loopback
    (`ray_args` add to it, e.g. num_gpus), storage under tmp_path/storage. Returns the summary."""

    def run(space: dict, uri: str | None = None, **ray_args):
        import ray
        import yaml

        from sweep.runtime.driver import run_sweep
        from sweep.spec.space import load_space

        path = tmp_path / f"{space['name']}.yaml"
        path.write_text(yaml.safe_dump(space))
        monkeypatch.chdir(tmp_path)
        from sweep.runtime.local_ray import init_ray

        init_ray(verbose=0, **{"num_cpus": 2, **ray_args})
        try:
            return run_sweep(
                load_space(path),
                path,
                storage=str(tmp_path / "storage"),
                uri=uri or f"sqlite:///{tmp_path / 'mlflow.db'}",
                verbose=0,
            )
        finally:
            ray.shutdown()

    return run


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size="64k", *options) -> a real tmpfs of that size (and mount options,
    e.g. "ro") at tmp_path/name, unmounted after the test (skipped where mounting is not
    permitted)."""
    import subprocess

    made: list[Path] = []

    def mount(name: str, size: str = "64k", *options: str) -> Path:
        where = tmp_path / name
        where.mkdir(parents=True, exist_ok=True)
        opts = ",".join((f"size={size}", *options))  # e.g. "ro"
        cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]
        if subprocess.run(cmd, capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs is not permitted here")
        made.append(where)
        return where

    yield mount
    for where in made:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture(scope="session")
def one_epoch_model(tmp_path_factory, tiny_config_dict) -> Path:
    """best.pt of the tiny config trained one epoch (for predict, export, evaluate)."""
    from nrfer.config import make_config
    from nrfer.train import fit

    out = tmp_path_factory.mktemp("one-epoch") / "run"
    raw = {**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 1}}
    fit(make_config(raw), out_dir=out, evaluate_test=False)
    return out / "checkpoint" / "best.pt"


# The longest test files, longest first (measured with two workers on this 2-core machine,
# 2026-12-07: 313 s, then 100-190 s each): collected first, so the parallel suite starts them
# first (`make test` hands tests out one at a time) and no worker ends the run alone inside a
# minutes-long test while the other idles.
LONGEST_FIRST = (
    "test_ledger_kills.py",
    "test_resume.py",
    "test_train.py",
    "test_best.py",
    "test_mlflow_outage.py",
    "test_cluster.py",
    "test_disk_full.py",
    "test_study.py",
    "test_faults.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
