"""Scheduling across GPUs, on the CPU: a Ray cluster that declares two GPUs it does not have
(`ray.init(num_gpus=2)`), four trials at `resources.gpu: 0.5`. Ray must never put more than
two trials on one GPU and must point each trial's CUDA_VISIBLE_DEVICES at the GPU it gave;
`train.device: auto` then trains on the CPU (with one warning) because CUDA is absent."""

import itertools

import pytest

from helpers import tiny_space

pytestmark = pytest.mark.slow


def test_fractional_gpus_are_shared_by_at_most_two_trials(synthetic_root, run_tiny_sweep):
    from mlflow.tracking import MlflowClient

    space = tiny_space(
        "gpus",
        synthetic_root,
        resizer={"enabled": False},
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        # FIFO: each trial closes its own run, so a run's end time is when its GPU share ended
        scheduler={"name": "fifo", "max_epochs": 2},
        budget={"num_samples": 4, "max_concurrent": 4},
    )
    space["resources"] = {"cpu": 0.5, "gpu": 0.5}
    space["fixed"]["train"]["device"] = "auto"
    summary = run_tiny_sweep(space, num_gpus=2)  # GPUs Ray is told of; there are none
    assert summary.num_trials == 4 and summary.num_errors == 0
    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("gpus")
    runs = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("nrfer.role") == "trial"
    ]
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        tags = r.data.tags
        assert tags["nrfer.gpu_ids"] in ("0", "1"), tags["nrfer.gpu_ids"]  # half of one GPU
        assert tags["nrfer.cuda_visible_devices"] == tags["nrfer.gpu_ids"]
        assert tags["nrfer.device"] == "cpu"  # auto, and CUDA is absent here
    # at any moment, at most two trials on one GPU (intervals: run start .. run end)
    by_gpu: dict[str, list] = {}
    for r in runs:
        by_gpu.setdefault(r.data.tags["nrfer.gpu_ids"], []).append(r)
    for gpu, group in by_gpu.items():
        # an end sorts before a start at the same millisecond: the GPU share was handed on
        events = sorted(
            [(r.info.start_time, 1) for r in group] + [(r.info.end_time, -1) for r in group]
        )
        load = list(itertools.accumulate(step for _, step in events))
        assert max(load) <= 2 and load[-1] == 0, (gpu, events)
    assert sum(len(g) for g in by_gpu.values()) == 4
