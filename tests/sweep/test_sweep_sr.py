"""A sweep over data.sr.scale: each SR cache is built once, by the driver, before any trial,
and every trial of a scale reads that one cache."""

import datetime as dt
import json

import pytest

from helpers import tiny_space

pytestmark = pytest.mark.slow


def test_sweep_over_sr_scale_builds_each_cache_once(tmp_path, synthetic_root, run_tiny_sweep):
    from mlflow.tracking import MlflowClient

    space = tiny_space(
        "srsweep",
        synthetic_root,
        resizer={"enabled": False},
        search={"data.sr.scale": {"choice": [2, 4]}, "optim.lr": {"choice": [0.003]}},
        scheduler={"name": "fifo", "max_epochs": 1},
        budget={"num_samples": 4, "max_concurrent": 2},
    )
    space["searcher"] = "random"
    space["tracking"] = {"system_metrics": False}  # the space file's switch
    space["data"]["sr"] = {"method": "bicubic", "cache_dir": "sr-cache"}  # relative on purpose
    summary = run_tiny_sweep(space)
    assert summary.num_errors == 0

    manifests = [json.loads(m.read_text()) for m in (tmp_path / "sr-cache").glob("*/manifest.json")]
    assert sorted(m["scale"] for m in manifests) == [2, 4]  # one cache per scale
    by_scale = {m["scale"]: m for m in manifests}
    assert set(summary.sr_caches) == {
        str(p.parent) for p in (tmp_path / "sr-cache").glob("*/manifest.json")
    }

    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("srsweep")
    trials = client.search_runs([exp.experiment_id], "tags.`nrfer.role` = 'trial'")
    # dataset inputs: the parent lists the data as read and each SR stage; a trial its own,
    # whose digest follows the cache it read (another scale, another digest)
    parent = client.get_run(summary.parent_run_id)
    datasets = {i.dataset.name: i.dataset for i in parent.inputs.dataset_inputs}
    base_name = "ferplus-majority"
    assert set(datasets) == {base_name, f"{base_name}+sr-bicubic-x2", f"{base_name}+sr-bicubic-x4"}
    assert len({d.digest for d in datasets.values()}) == 3
    for t in trials:
        (inp,) = client.get_run(t.info.run_id).inputs.dataset_inputs
        scale = int(t.data.params["data.sr.scale"])
        assert inp.dataset.name == f"{base_name}+sr-bicubic-x{scale}"
        assert inp.dataset.digest == datasets[inp.dataset.name].digest
        profile = json.loads(inp.dataset.profile)
        assert profile["sr"]["build_id"] == by_scale[scale]["build_id"]
        assert profile["image_size"] == [48 * scale, 48 * scale]
        # system metrics switched off; the trial's own peak memory is still logged
        metrics = client.get_run(t.info.run_id).data.metrics
        assert (
            not [k for k in metrics if k.startswith("system/")] and metrics["trial_peak_rss_mb"] > 0
        )
    assert len(trials) == 4
    scales = {int(t.data.params["data.sr.scale"]) for t in trials}
    assert scales == {2, 4}, "the seeded random draws should cover both scales"
    for t in trials:
        scale = int(t.data.params["data.sr.scale"])
        # the trial read the cache the driver built (same build), not one of its own
        assert t.data.tags["nrfer.sr_build_id"] == by_scale[scale]["build_id"]
        built = dt.datetime.fromisoformat(by_scale[scale]["built_at"]).timestamp() * 1000
        assert built < t.info.start_time
        assert len(client.get_metric_history(t.info.run_id, "val_acc")) == 1
