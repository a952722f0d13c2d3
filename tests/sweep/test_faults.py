"""Faults inside a real sweep under ASHA (the shipped scheduler): a trial that cannot build
and a trial that diverges each fail alone and count at their rung with the worst value."""

import pytest
import yaml

from helpers import tiny_space

pytestmark = pytest.mark.slow


def test_crashing_and_diverging_trials_fail_alone(tmp_path, synthetic_root, run_tiny_sweep):
    from mlflow.tracking import MlflowClient

    space = tiny_space(
        "faults",
        synthetic_root,
        resizer={"enabled": False},
        # cuda:9 does not exist here (the trial cannot build); lr 10 with SGD diverges to NaN
        search={
            "train.device": {"choice": ["cpu", "cuda:9"]},
            "optim.lr": {"choice": [0.01, 10.0]},
        },
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2, "max_epochs": 2},
        budget={"num_samples": 5, "max_concurrent": 2, "max_failures": 1},
    )
    space["fixed"]["optim"] = {"name": "sgd"}
    space["searcher"] = "random"  # seeded: the same five draws every run
    summary = run_tiny_sweep(space)
    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("faults")
    trials = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("nrfer.role") == "trial"
    ]
    # Ray retried the crashing trials (max_failures); each kept one run
    assert len(trials) == 5 and len({t.data.tags["nrfer.trial_id"] for t in trials}) == 5

    def kind(t):
        if t.data.params["train.device"] != "cpu":
            return "crash"
        return "diverge" if float(t.data.params["optim.lr"]) > 1 else "ok"

    assert {kind(t) for t in trials} == {"crash", "diverge", "ok"}
    for t in trials:
        errors = [a.path for a in client.list_artifacts(t.info.run_id, "error")]
        if kind(t) == "ok":
            assert t.info.status == "FINISHED" and not errors
        else:
            assert t.info.status == "FAILED" and errors == ["error/error.txt"], kind(t)
            assert (t.data.tags.get("nrfer.diverged") == "true") == (kind(t) == "diverge")
        if kind(t) == "diverge":  # stopped after its first epoch, reported as the worst result
            assert len(client.get_metric_history(t.info.run_id, "val_acc")) == 0
    # only the crashes are Ray errors; the diverged trials ended themselves
    assert summary.num_errors == sum(kind(t) == "crash" for t in trials)
    parent = next(
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("nrfer.role") == "sweep"
    )
    assert parent.info.status == "FINISHED"
    # ASHA counts a crashed or diverged trial at the first rung it did not pass, as the worst
    state = yaml.safe_load(
        (tmp_path / "storage" / "faults" / "nrfer_ledger" / "asha_rungs.yaml").read_text()
    )
    rungs = {r["milestone"]: r["scores"] for r in state["brackets"][0]}
    for t in trials:
        trial_id = t.data.tags["nrfer.trial_id"]
        if kind(t) != "ok":
            assert rungs[1][trial_id] == 0.0 and trial_id not in rungs[2], (kind(t), rungs)
        else:
            history = client.get_metric_history(t.info.run_id, "val_acc")
            assert rungs[1][trial_id] == next(m.value for m in history if m.step == 0)
    crashed = {t.data.tags["nrfer.trial_id"] for t in trials if kind(t) == "crash"}
    assert set(state["failed"]) == crashed  # retried first (max_failures), marked once at the end
