"""Early stopping with several objectives: a trial stops at a rung only where enough trials
dominate it there (sweep.runtime.stopping.dominance), on hand-worked points, then inside adaptive
early stopping as Tune drives it, against ASHA on the same trials, and across a resume."""

import yaml
from ray.tune.schedulers import TrialScheduler

from sweep.runtime.stopping.adaptive import AdaptiveStopping
from sweep.runtime.stopping.dominance import DominancePruner, rungs_of

SENSES = {"val_acc": "max", "latency_ms": "min"}


def test_with_one_objective_the_fraction_is_ashas_cut():
    """One objective: dominating is beating, so half of the recorded trials beating a trial
    stops it, as ASHA at rf 2 stops a trial under the median."""
    pruner = DominancePruner([1], {"val_acc": "max"}, fraction=0.5)
    for i, v in enumerate([0.1, 0.2, 0.3, 0.4]):
        pruner.records.setdefault(1, {})[f"r{i}"] = {"val_acc": v}
    assert pruner.on_result("low", 1, {"val_acc": 0.25})  # 2 of 4 beat it
    assert not pruner.on_result("high", 1, {"val_acc": 0.35})  # 1 of 5 beats it


def test_rungs_are_ashas():
    assert rungs_of(2, 2, 10) == [2, 4, 8]
    assert rungs_of(3, 3, 9) == [3]  # never the last epoch
    assert rungs_of(4, 2, 4) == []


def test_a_trial_stops_where_enough_recorded_trials_dominate_it():
    # half the trials recorded at the rung (ASHA's 1 - 1/rf at rf 2), and at least 2
    pruner = DominancePruner([2, 4], SENSES, min_dominating=2, fraction=0.5)
    assert not pruner.on_result("a", 2, {"val_acc": 0.6, "latency_ms": 5.0})
    assert not pruner.on_result("b", 2, {"val_acc": 0.7, "latency_ms": 4.0})  # dominates a
    # c: worse than a and b on both: dominated twice
    assert pruner.dominating(2, "c", {"val_acc": 0.5, "latency_ms": 6.0}) == 2
    assert pruner.on_result("c", 2, {"val_acc": 0.5, "latency_ms": 6.0})
    # d: the least accurate, but the fastest: nobody dominates it
    assert not pruner.on_result("d", 2, {"val_acc": 0.3, "latency_ms": 1.0})
    # e: equal to a on both: a does not dominate it (strictly better on one is needed);
    # b does (better on both): one, under 2
    assert pruner.dominating(2, "e", {"val_acc": 0.6, "latency_ms": 5.0}) == 1
    assert not pruner.on_result("e", 2, {"val_acc": 0.6, "latency_ms": 5.0})
    # f: slower than a, more accurate than every trial: nobody dominates it
    assert not pruner.on_result("f", 2, {"val_acc": 0.9, "latency_ms": 9.0})
    # not a rung, or an objective missing: recorded nowhere, never stopped
    assert not pruner.on_result("g", 3, {"val_acc": 0.0, "latency_ms": 99.0})
    assert not pruner.on_result("h", 2, {"val_acc": 0.0})
    assert set(pruner.records) == {2} and set(pruner.records[2]) == set("abcdef")
    # by any one: e (dominated by b) stops too
    strict = DominancePruner([2], SENSES, 1, pruner.to_dict()["records"], fraction=0.0)
    assert strict.on_result("e2", 2, {"val_acc": 0.6, "latency_ms": 5.0})
    # a pruner rebuilt from its records decides the same; a rerun epoch is decided once.
    # c2 (equal to c): of the 6 recorded, a, b and e dominate it: 3 = half of 6
    again = DominancePruner(**{k: v for k, v in pruner.to_dict().items()}, senses=SENSES)
    assert again.dominating(2, "c2", {"val_acc": 0.5, "latency_ms": 6.0}) == 3
    assert again.on_result("c2", 2, {"val_acc": 0.5, "latency_ms": 6.0})
    # a recorded epoch reported again (a trial resumed before Tune acted on the stop):
    # the same decision, against the trials recorded before it
    assert again.on_result("c", 2, {"val_acc": 0.5, "latency_ms": 6.0})
    assert not again.on_result("d", 2, {"val_acc": 0.3, "latency_ms": 1.0})
    assert list(again.records[2]) == [*"abcdef", "c2"]  # nothing recorded twice


class Trial:
    def __init__(self, tid: str) -> None:
        self.trial_id = tid


def drive(scheduler, trials: dict[str, tuple[list[float], float]]) -> dict[str, int]:
    """Trials (curve, latency) run one after another as Tune calls the hooks, each result
    carrying the trial's latency as the trainable reports it; returns each one's epochs."""
    ran = {}
    for tid, (curve, latency) in trials.items():
        t = Trial(tid)
        scheduler.on_trial_add(None, t)
        result = {}
        for e, v in enumerate(curve, 1):
            result = {"training_iteration": e, "val_acc": v, "latency_ms": latency}
            ran[tid] = e
            if scheduler.on_trial_result(None, t, result) == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, t, result)
    return ran


def make(folder, senses=SENSES):
    s = AdaptiveStopping(
        folder,
        max_t=6,
        reduction_factor=2,
        min_trials=6,
        threshold=0.6,
        senses=senses,
        min_dominating=2,
    )
    s.set_search_properties("val_acc", "max")
    return s


def test_adaptive_with_two_objectives_spares_the_fast_trial_asha_stops(tmp_path):
    # 6 parallel curves (epoch 1 ranks the end: the rung goes to epoch 1), latency rising with
    # accuracy: every one of them on the front
    first = {f"t{i}": ([0.3 + 0.05 * i + 0.01 * e for e in range(6)], 2.0 + i) for i in range(6)}
    # slow and weak: dominated by all six at epoch 1; fast and weak: the fastest of all
    late = {"slow_weak": ([0.2] * 6, 20.0), "fast_weak": ([0.2] * 6, 0.5)}
    pareto = make(tmp_path / "pareto")
    ran = drive(pareto, {**first, **late})
    assert pareto.choice is not None and pareto.choice.epoch == 1
    assert pareto.choice.min_dominating == 2
    assert "as many trials dominate it as ASHA needs to beat it" in pareto.choice.line()
    assert ran == {**dict.fromkeys(first, 6), "slow_weak": 1, "fast_weak": 6}
    assert pareto.asha is None and pareto.pruner is not None
    assert pareto.pruner.rungs == [1, 2, 4]
    # ASHA on val_acc alone (the same decision, one objective) stops the fast one too
    asha = make(tmp_path / "asha", senses=None)
    ran = drive(asha, {**first, **late})
    assert asha.choice is not None and asha.choice.epoch == 1 and asha.asha is not None
    assert ran["slow_weak"] == 1 and ran["fast_weak"] == 1
    # the record keeps the decision, the completed trials' costs and the rung points: a
    # resumed scheduler stops the same trial and spares the same one
    record = yaml.safe_load((tmp_path / "pareto" / "early_stopping.yaml").read_text())
    assert record["costs"] == {t: {"latency_ms": lat} for t, (_, lat) in first.items()}
    assert record["pruner"]["records"][1]["slow_weak"] == {"val_acc": 0.2, "latency_ms": 20.0}
    resumed = make(tmp_path / "pareto")
    assert resumed.pruner is not None and resumed.choice == pareto.choice
    assert drive(resumed, {"slow2": ([0.2] * 6, 20.0), "fast2": ([0.2] * 6, 0.4)}) == {
        "slow2": 1,
        "fast2": 6,
    }


def test_a_running_trial_the_decision_finds_dominated_stops_at_its_next_result(tmp_path):
    s = make(tmp_path)
    running = Trial("running")
    s.on_trial_add(None, running)
    for e in (1, 2):
        result = {"training_iteration": e, "val_acc": 0.1, "latency_ms": 50.0}
        assert s.on_trial_result(None, running, result) == TrialScheduler.CONTINUE
    first = {f"t{i}": ([0.3 + 0.05 * i + 0.01 * e for e in range(6)], 2.0 + i) for i in range(6)}
    drive(s, first)
    assert s.choice is not None and s.choice.epoch == 1
    result = {"training_iteration": 3, "val_acc": 0.1, "latency_ms": 50.0}
    assert s.on_trial_result(None, running, result) == TrialScheduler.STOP
