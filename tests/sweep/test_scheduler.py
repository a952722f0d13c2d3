"""ResumableASHA without a sweep: its rung records survive a restart, Tune can set its
metric again after a restore, and failed trials count at their rung with the worst value."""

from types import SimpleNamespace

import pytest
import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from sweep.compat.ray_tune import asha_rungs
from sweep.runtime.stopping.asha import ResumableASHA


def asha(path, **kw):
    args = {"max_t": 8, "grace_period": 1, "reduction_factor": 2, **kw}
    return ResumableASHA(path, time_attr="training_iteration", **args)


def trial(trial_id):
    return SimpleNamespace(trial_id=trial_id)


def report(s, trial_id, iteration, value):
    result = {"training_iteration": iteration, s.metric: value}
    return s.on_trial_result(None, trial(trial_id), result)


def test_records_survive_a_restart_in_arrival_order(tmp_path):
    path = tmp_path / "rungs.yaml"
    first = asha(path)
    assert first.set_search_properties("val_acc", "max")
    for t, v in (("b", 0.5), ("a", 0.7), ("c", 0.2)):
        first.on_trial_add(None, trial(t))
        report(first, t, 1, v)
    assert report(first, "c", 1, 0.2) == TrialScheduler.CONTINUE  # recorded once only
    saved = yaml.safe_load(path.read_text())
    assert list(saved["brackets"][0][-1]["scores"]) == ["b", "a", "c"]  # arrival order

    # What Tune restores is the scheduler pickled when the sweep began (no metric yet);
    # setting the metric again must work (a restored metric made Tune refuse to start)
    restored = asha(path)
    assert restored.set_search_properties("val_acc", "max")
    assert restored.rung_records()["brackets"] == first.rung_records()["brackets"]
    restored.on_trial_add(None, trial("d"))
    assert report(restored, "d", 1, 0.1) == TrialScheduler.STOP  # below the restored cut-off
    assert list(yaml.safe_load(path.read_text())["brackets"][0][-1]["scores"]) == [
        "b",
        "a",
        "c",
        "d",
    ]


def test_ray_restore_of_the_whole_scheduler_is_what_broke_resume(tmp_path):
    old = ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2)
    old.set_search_properties("val_acc", "max")
    old.save(str(tmp_path / "asha.pkl"))
    again = ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2)
    again.restore(str(tmp_path / "asha.pkl"))
    assert not again.set_search_properties("val_acc", "max")  # Tune raises on this


def test_failed_trials_count_at_their_next_rung_with_the_worst_value(tmp_path):
    s = asha(tmp_path / "rungs.yaml")
    s.set_search_properties("val_loss", "min")
    for t in ("ok", "crash", "diverged"):
        s.on_trial_add(None, trial(t))
        report(s, t, 1, 1.0)
    report(s, "ok", 2, 0.9)
    s.on_trial_error(None, trial("crash"))  # first failure: marked ...
    rungs = {m: r for m, r in asha_rungs(s)[0]}
    assert rungs[2]["crash"] == -1.0e6  # score = -val_loss; the worst loss is 1e6
    s.on_trial_add(None, trial("crash"))  # ... Ray retries it: the mark goes
    assert "crash" not in rungs[2]
    s.on_trial_error(None, trial("crash"))
    assert rungs[2]["crash"] == -1.0e6
    # a diverged trial reports the worst result at iteration 3 (no rung): marked at rung 4
    report(s, "diverged", 2, 1.1)
    s.on_trial_complete(
        None, trial("diverged"), {"training_iteration": 3, "val_loss": 1.0e6, "diverged": True}
    )
    assert rungs[4]["diverged"] == -1.0e6 and "diverged" not in rungs[8]
    saved = yaml.safe_load((tmp_path / "rungs.yaml").read_text())
    assert saved["failed"] == {"crash": [0, 2], "diverged": [0, 4]}


def test_records_of_another_schedule_are_refused(tmp_path):
    path = tmp_path / "rungs.yaml"
    s = asha(path)
    s.set_search_properties("val_acc", "max")
    s.on_trial_add(None, trial("a"))
    report(s, "a", 1, 0.5)
    with pytest.raises(ValueError, match="milestones"):
        asha(path, max_t=4).set_search_properties("val_acc", "max")
