"""The early-stopping family (sweep.runtime.stopping): every rule behind one interface, and
the worked example (the median rule) under a real Ray Tune on a fast fake trainable."""

from __future__ import annotations

import json

import pytest

from helpers import fake_curves, tiny_space


def raw_space(synthetic_root, **early_stopping) -> dict:
    search = {"optim.lr": {"loguniform": [1e-4, 1e-2]}}
    budget = {"num_samples": 6, "max_concurrent": 1}
    stopping = {"max_epochs": 5, **early_stopping}
    return tiny_space("stopping", synthetic_root, search=search, scheduler=stopping, budget=budget)


def spec_with(synthetic_root, **early_stopping):
    from sweep.spec.space import parse_space

    return parse_space(raw_space(synthetic_root, **early_stopping), "stopping.yaml")


def test_every_rule_is_listed_builds_and_describes_itself(synthetic_root, tmp_path):
    from sweep.runtime.stopping import RULES, rule_for
    from sweep.spec.sections import EARLY_STOPPING_KEYS

    assert set(RULES) == set(EARLY_STOPPING_KEYS) == {"fifo", "asha", "adaptive", "median"}
    lines = {}
    for name in RULES:
        rule = rule_for(spec_with(synthetic_root, name=name))
        assert rule.name == name
        scheduler = rule.build(tmp_path)
        rule.attach(scheduler, tmp_path, announce=print)
        rule.check(tmp_path)  # no records yet: nothing to refuse
        lines[name] = rule.describe()
        assert lines[name].startswith(f"{name} (") and "\n" not in lines[name]
    assert "rungs from epoch 1, reduction 2, up to 5 epochs" in lines["asha"]
    assert "the first 8 trials run their 5 epochs" in lines["adaptive"]
    assert "median of at least 3 others" in lines["median"]


def test_median_with_several_objectives_is_refused(synthetic_root):
    from sweep.spec.space import SpaceError, parse_space

    raw = raw_space(synthetic_root, name="median")
    raw["objectives"] = {"val_acc": "max", "latency_ms": "min"}
    with pytest.raises(SpaceError, match="median ranks trials by val_acc alone"):
        parse_space(raw, "two.yaml")


@pytest.mark.slow
def test_the_median_rule_under_tune_stops_the_trials_below_the_median(synthetic_root, tmp_path):
    """Six trials one at a time, trial i's val_acc q_i * epoch / 5: with min_samples 2, the
    first two only report; from the third on, a trial whose value is below the median of
    the others at epoch 1 stops there."""
    from sweep.runtime.stopping import rule_for
    from sweep.runtime.stopping.median import RECORDS, MedianStopping

    rule = rule_for(spec_with(synthetic_root, name="median", grace_period=1, min_samples=2))
    folder = tmp_path / "ledger"
    qs = [0.9, 0.8, 0.7, 0.2, 0.1, 0.95]
    epochs = fake_curves(rule.build(folder), qs, epochs=5, storage=tmp_path / "tune")
    assert epochs == [5, 5, 1, 1, 1, 5]

    # the records a resumed sweep compares against: every trial's reported values
    lines = [json.loads(x) for x in (folder / RECORDS).read_text().splitlines()]
    assert len(lines) == 3 * 5 + 3 * 1  # one appended line per result
    records: dict = {}
    for r in lines:
        records.setdefault(r["trial"], {})[r["epoch"]] = r["value"]
    assert sorted(len(c) for c in records.values()) == [1, 1, 1, 5, 5, 5]
    again = MedianStopping(folder / RECORDS, grace_period=1, min_samples=2)
    again.set_search_properties("val_acc", "max")
    assert again.values == {t: {int(e): v for e, v in c.items()} for t, c in records.items()}

    class Trial:
        trial_id = "later"

    # the median at epoch 1 over the six is 0.15 (0.1 is below it); at epoch 2, 0.36
    assert again.on_trial_result(None, Trial, {"training_iteration": 1, "val_acc": 0.1}) == "STOP"
    assert again.on_trial_result(None, Trial, {"training_iteration": 2, "val_acc": 0.9}) != "STOP"

    (folder / RECORDS).write_text("[not, a, mapping")
    from nrfer.config import ConfigError

    with pytest.raises(ConfigError, match=RECORDS):
        rule.check(folder)
