"""Adaptive early stopping: the first rung placed where the sweep's own curves rank the final
value (Spearman with a bootstrap bound), or no early stopping; checked on synthetic curves
with known crossings, then as Tune drives the scheduler, and across a resume."""

import numpy as np
import pytest
import yaml
from ray.tune.schedulers import TrialScheduler

from sweep.runtime.stopping.adaptive import AdaptiveStopping, choose_rung, spearman_rows


def crossing(n: int, epochs: int, cross: float, seed: int = 0) -> list[list[float]]:
    """n curves whose order before epoch `cross` is the reverse of their final order (fast
    starters that plateau low) and the same after it; a little noise, no ties."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        final = 0.6 + 0.03 * i  # every final value above every early one
        early = 0.2 + 0.03 * (n - 1 - i)
        curve = [
            (early if e < cross else final) + 0.02 * e + rng.uniform(0, 1e-4)
            for e in range(1, epochs + 1)
        ]
        out.append(curve)
    return out


def test_spearman_matches_scipy_and_has_no_evidence_without_spread():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    x[0, :3] = x[0, 3]  # ties
    for row in range(5):
        assert spearman_rows(x[row : row + 1], y[row : row + 1])[0] == pytest.approx(
            spearmanr(x[row], y[row]).statistic
        )
    assert spearman_rows(np.ones((1, 6)), y[:1, :6])[0] == 0.0


def test_the_rung_goes_to_the_first_epoch_after_the_curves_cross():
    choice = choose_rung(crossing(10, 8, cross=3.5), 8, threshold=0.6)
    assert choice.epoch == 4 and choice.trials == 10
    rho = {r["epoch"]: r["rho"] for r in choice.rows}
    assert rho[1] == rho[2] == rho[3] == -1.0 and rho[4] == rho[7] == 1.0
    assert [r["epoch"] for r in choice.rows] == list(range(1, 8))  # never the last epoch
    lows = {r["epoch"]: r["low"] for r in choice.rows}
    assert lows[4] >= 0.6 > lows[3]
    assert "first rung at epoch 4" in choice.line() and "10 completed trials" in choice.line()


def test_parallel_curves_stop_from_epoch_one_and_noise_stops_nothing():
    parallel = [[0.3 + 0.05 * i + 0.01 * e for e in range(6)] for i in range(8)]
    assert choose_rung(parallel, 6, 0.6).epoch == 1
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.2, 0.6, size=(12, 6)).tolist()  # each epoch independent
    choice = choose_rung(noise, 6, 0.6)
    assert choice.epoch is None and "no early stopping" in choice.line()
    # a metric to minimise: the same curves negated rank the same way
    negated = [[-v for v in c] for c in crossing(10, 8, 3.5)]
    assert choose_rung(negated, 8, 0.6, sign=-1.0).epoch == 4


def test_few_trials_give_a_wide_bound_and_a_later_or_no_rung():
    """4 trials agreeing perfectly at epoch 1 still leave a bootstrap bound under a strict
    threshold: the rule waits for evidence rather than betting on 4 points."""
    parallel = [[0.3 + 0.05 * i + 0.01 * e for e in range(6)] for i in range(4)]
    noisy = [c[:] for c in parallel]
    noisy[0][0], noisy[1][0] = noisy[1][0], noisy[0][0]  # one swap at epoch 1
    strict = choose_rung(noisy, 6, 0.9)
    assert strict.rows[0]["rho"] == pytest.approx(0.8) and strict.rows[0]["low"] < 0.9
    assert strict.epoch == 2


class Trial:
    def __init__(self, tid: str) -> None:
        self.trial_id = tid


def drive(scheduler, curves: dict[str, list[float]], order: list[str]) -> dict[str, int]:
    """Trials run one after another, as Tune calls the hooks; returns each one's epochs."""
    ran = {}
    for tid in order:
        t = Trial(tid)
        scheduler.on_trial_add(None, t)
        result = {}
        for e, v in enumerate(curves[tid], 1):
            result = {"training_iteration": e, "val_acc": v}
            ran[tid] = e
            if scheduler.on_trial_result(None, t, result) == TrialScheduler.STOP:
                break
        scheduler.on_trial_complete(None, t, result)
    return ran


def test_the_scheduler_decides_after_min_trials_then_stops_at_the_rung_and_resumes(tmp_path):
    curves = crossing(12, 8, cross=3.5)
    named = {f"t{i:02d}": c for i, c in enumerate(curves)}
    announced = []

    def make():
        s = AdaptiveStopping(tmp_path, max_t=8, reduction_factor=2, min_trials=6, threshold=0.6)
        s.set_search_properties("val_acc", "max")
        s.announce = announced.append
        return s

    first = make()
    order = list(named)  # the first 6 run to their end, whatever they show
    running = Trial("running")  # started before the decision, weak at epochs 1..5
    first.on_trial_add(None, running)
    for e in range(1, 6):
        result = {"training_iteration": e, "val_acc": 0.05}
        assert first.on_trial_result(None, running, result) == TrialScheduler.CONTINUE
    ran = drive(first, named, order[:6])
    assert ran == dict.fromkeys(order[:6], 8) and first.choice is not None
    assert first.choice.epoch == 4 and announced == [first.choice]
    # replayed into ASHA, the running trial is below the cut at epoch 4: its next result
    # stops it, and Tune's completion reaches ASHA once
    result = {"training_iteration": 6, "val_acc": 0.05}
    assert first.on_trial_result(None, running, result) == TrialScheduler.STOP
    first.on_trial_complete(None, running, result)
    record = yaml.safe_load((tmp_path / "early_stopping.yaml").read_text())
    assert record["choice"]["epoch"] == 4 and len(record["completed"]) == 6
    # ASHA from epoch 4 with the 6 completed trials replayed into it: a trial below their
    # median at epoch 4 stops there; one above goes on to the next rung
    weak = [0.1] * 8
    strong = [0.1, 0.1, 0.1, 0.99, 0.99, 0.99, 0.99, 0.99]
    ran = drive(first, {"weak": weak, "strong": strong}, ["weak", "strong"])
    assert ran == {"weak": 4, "strong": 8}
    # a resumed driver reads the decision and ASHA's records back: the same stop
    second = make()
    assert second.choice is not None and second.choice.epoch == 4 and second.asha is not None
    assert drive(second, {"weak2": weak}, ["weak2"]) == {"weak2": 4}
    assert len(announced) == 1  # decided once


def test_no_qualifying_epoch_means_fifo_to_the_end(tmp_path):
    rng = np.random.default_rng(3)
    named = {f"t{i}": rng.uniform(0.2, 0.6, 6).tolist() for i in range(14)}
    s = AdaptiveStopping(tmp_path, max_t=6, reduction_factor=2, min_trials=12, threshold=0.6)
    s.set_search_properties("val_acc", "max")
    ran = drive(s, named, list(named))
    assert s.choice is not None and s.choice.epoch is None and s.asha is None
    assert set(ran.values()) == {6}  # every trial to its last epoch
    assert not (tmp_path / "asha_rungs.yaml").exists()


def test_looks_again_when_the_completed_trials_double_and_keeps_that_across_a_resume(tmp_path):
    # 6 trials whose early epochs say nothing, then trials whose epoch 2 ranks the end:
    # with `looks_again` no rung at 6, a look again at 12 (over all 12) places one
    rng = np.random.default_rng(5)
    noise = {f"n{i}": rng.uniform(0.2, 0.6, 6).tolist() for i in range(6)}
    ranked = {f"r{i}": [0.1 + 0.05 * i + 0.01 * e for e in range(1, 7)] for i in range(12)}

    def make(again=True):
        s = AdaptiveStopping(
            tmp_path, max_t=6, reduction_factor=2, min_trials=6, threshold=0.3, looks_again=again
        )
        s.set_search_properties("val_acc", "max")
        return s

    first = make()
    drive(first, noise, list(noise))
    assert first.choice is not None and first.choice.epoch is None
    assert first.choice.next_look == 12
    assert "looks again at 12 completed trials" in first.choice.line()
    record = yaml.safe_load((tmp_path / "early_stopping.yaml").read_text())
    assert record["choice"]["next_look"] == 12 and len(record["completed"]) == 6
    # a resume between the looks keeps the completed trials and the next look
    second = make()
    assert second.choice.next_look == 12 and len(second.completed) == 6
    ran = drive(second, ranked, list(ranked)[:5])
    assert set(ran.values()) == {6} and second.choice.epoch is None  # 11 done: no look yet
    drive(second, ranked, list(ranked)[5:6])  # the 12th: it looks again, over all 12
    assert second.choice.trials == 12 and second.choice.epoch is not None
    assert second.asha is not None
    # without looks_again the first answer stands (the shipped behaviour before this key)
    (tmp_path / "early_stopping.yaml").unlink()
    once = make(again=False)
    drive(once, {**noise, **ranked}, list(noise) + list(ranked))
    assert once.choice.epoch is None and once.choice.next_look is None and once.choice.trials == 6


@pytest.mark.slow
def test_a_real_sweep_places_its_rung_and_says_so(run_tiny_sweep, synthetic_root, tmp_path, capsys):
    """Through Ray Tune: 3 trials run to their end, the decision is in the ledger, on the
    parent run (tag, rho per epoch, decision.json) and in the terminal; a trial after it
    stops no later than it would under that decision."""
    from mlflow.tracking import MlflowClient

    from helpers import tiny_space

    space = tiny_space(
        "adaptive",
        synthetic_root,
        search={"optim.lr": {"loguniform": [1e-4, 1e-2]}},
        scheduler={"name": "adaptive", "max_epochs": 3, "min_trials": 3},
        budget={"num_samples": 4, "max_concurrent": 2},
    )
    summary = run_tiny_sweep(space)
    assert summary.num_trials == 4 and summary.num_errors == 0
    record = yaml.safe_load(
        (tmp_path / "storage" / "adaptive" / "nrfer_ledger" / "early_stopping.yaml").read_text()
    )
    choice = record["choice"]
    assert choice["trials"] == 3 and len(record["completed"]) == 3
    assert [r["epoch"] for r in choice["rows"]] == [1, 2]
    assert "early stopping (adaptive): " in capsys.readouterr().out
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("adaptive")
    (parent,) = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("nrfer.role") == "sweep"
    ]
    rung = choice["epoch"]
    expected = f"first rung at epoch {rung}" if rung else "none: no epoch qualifies"
    assert parent.data.tags["nrfer.early_stopping"] == f"adaptive: {expected}"
    lows = client.get_metric_history(parent.info.run_id, "early_stopping_rho_low")
    assert [(m.step, m.value) for m in lows] == [(r["epoch"], r["low"]) for r in choice["rows"]]
    trials = [
        r
        for r in client.search_runs([exp.experiment_id])
        if r.data.tags.get("nrfer.role") == "trial"
    ]
    epochs = sorted(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in trials)
    assert epochs.count(3) >= 3  # the first three ran to their end
    if rung is None:
        assert epochs == [3] * 4
