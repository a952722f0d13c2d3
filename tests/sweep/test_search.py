"""The searcher through the calls Tune makes (suggest, on_trial_result, on_trial_complete,
save, restore), on a real Optuna study in a SQLite file: pruned trials told as PRUNED,
the study kept and resumed, warm start from a sweep with another space."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from sweep.runtime.search import SweepSearch, open_storage, start_study, warm_start_trials
from sweep.spec.space import parse_space

SPACE = {
    "name": "s1",
    "data": {"dataset": "synthetic"},
    "fixed": {"model": {"backbone": "resnet10t"}},
    "search": {
        "loss.name": {"choice": ["ce", "focal"]},
        "loss.gamma": {"uniform": [0.5, 3.0], "when": {"loss.name": "focal"}},
        "optim.lr": {"loguniform": [1e-4, 1e-2]},
        "model.stn": {"choice": [False, True]},
    },
    "early_stopping": {"name": "asha", "max_epochs": 4, "grace_period": 1},
    "budget": {"num_samples": 8},
}


def searcher(cls, spec, url, warm_start=None, **kw):
    """Ray's OptunaSearch on the study at `url`, or ours as the driver builds it (the
    warm-start trials put in the study first)."""
    if cls is SweepSearch:
        if warm_start:
            start_study(url, spec, warm_start)
        kw["study_url"] = url
    else:
        kw["storage"] = open_storage(url)
    return cls(
        space=spec.define_by_run,
        metric="val_acc",
        mode="max",
        sampler=spec.sampler(),
        study_name=spec.name,
        **kw,
    )


def play(s, trial_id: str, values: list[float], **last) -> None:
    """What Tune does for a trial: suggest, one result per epoch, complete with the last
    (a crashed trial completes with error=True and no result, as Tune's controller calls it)."""
    assert s.suggest(trial_id)
    result = {}
    for i, v in enumerate(values, start=1):
        result = {"val_acc": v, "training_iteration": i}
        s.on_trial_result(trial_id, result)
    if last.get("error"):
        s.on_trial_complete(trial_id, error=True)
    else:
        s.on_trial_complete(trial_id, {**result, **last} if values else None)


def test_stopped_trials_are_pruned_with_their_epochs_unlike_rays_searcher(tmp_path):
    spec = parse_space(SPACE, "s1.yaml")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    ours = searcher(SweepSearch, spec, url, max_epochs=4)
    # ASHA stops it at epoch 2: as in Tune, that result goes to on_trial_complete only
    assert ours.suggest("stopped")
    ours.on_trial_result("stopped", {"val_acc": 0.30, "training_iteration": 1})
    ours.on_trial_complete("stopped", {"val_acc": 0.35, "training_iteration": 2})
    play(ours, "full", [0.3, 0.4, 0.5, 0.55])
    play(ours, "diverged", [0.0], diverged=True)  # ends at epoch 1, but it is a bad config
    play(ours, "crashed", [0.2], error=True)
    study = optuna.load_study(study_name="s1", storage=url)  # read back from the file
    states = {t.number: t for t in study.trials}
    assert [states[i].state for i in range(4)] == [
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,
    ]
    assert states[0].intermediate_values == {1: 0.30, 2: 0.35}
    assert states[1].value == 0.55 and states[2].value == 0.0

    # Ray's own class: the stopped trial enters TPE as finished, with its epoch-2 value
    spec2 = parse_space({**SPACE, "name": "ray"}, "ray.yaml")
    ray_s = searcher(OptunaSearch, spec2, url)
    play(ray_s, "stopped", [0.30, 0.35])
    assert optuna.load_study(study_name="ray", storage=url).trials[0].state == TrialState.COMPLETE


def test_the_study_survives_a_restore_and_stray_trials_are_closed(tmp_path):
    spec = parse_space(SPACE, "s1.yaml")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = searcher(SweepSearch, spec, url, max_epochs=4)
    play(first, "a", [0.3, 0.4, 0.5, 0.6])
    first.suggest("b")  # running when Tune saved
    first.on_trial_result("b", {"val_acc": 0.2, "training_iteration": 1})
    first.save(str(tmp_path / "searcher.pkl"))
    first.suggest("c")  # asked after the save; then the driver is killed

    again = searcher(SweepSearch, spec, url, max_epochs=4)
    again.restore(str(tmp_path / "searcher.pkl"))
    for i in (2, 3, 4):
        again.on_trial_result("b", {"val_acc": 0.2 + i / 10, "training_iteration": i})
    again.on_trial_complete("b", {"val_acc": 0.6, "training_iteration": 4})
    study = optuna.load_study(study_name="s1", storage=url)
    assert [t.state for t in study.trials] == [
        TrialState.COMPLETE,
        TrialState.COMPLETE,
        TrialState.FAIL,  # "c": never reached a trial; not left RUNNING
    ]
    assert study.trials[1].intermediate_values == pytest.approx({1: 0.2, 2: 0.4, 3: 0.5, 4: 0.6})


def test_a_trial_told_after_the_last_save_is_not_told_again(tmp_path):
    """The window the random-kill test hit in CI: Tune saved the searcher with trial "b"
    running, Optuna was told "b" ended (ASHA stopped it: PRUNED), and the driver was killed
    before Tune saved again. The resumed Tune reruns "b" from its checkpoint; its results
    must not be reported to a finished Optuna trial (Optuna refuses: the sweep died with
    UpdateFinishedTrialError), and the study keeps what it was told first."""
    spec = parse_space(SPACE, "s1.yaml")
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = searcher(SweepSearch, spec, url, max_epochs=4)
    assert first.suggest("b")
    first.on_trial_result("b", {"val_acc": 0.2, "training_iteration": 1})
    first.save(str(tmp_path / "searcher.pkl"))
    first.on_trial_complete("b", {"val_acc": 0.25, "training_iteration": 2})  # then killed

    again = searcher(SweepSearch, spec, url, max_epochs=4)
    again.restore(str(tmp_path / "searcher.pkl"))
    again.on_trial_result("b", {"val_acc": 0.26, "training_iteration": 2})
    again.on_trial_result("b", {"val_acc": 0.3, "training_iteration": 3})
    again.on_trial_complete("b", {"val_acc": 0.3, "training_iteration": 3})
    play(again, "c", [0.4, 0.5, 0.6, 0.7])  # the searcher goes on asking and telling
    study = optuna.load_study(study_name="s1", storage=url)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[0].intermediate_values == pytest.approx({1: 0.2, 2: 0.25})
    assert study.trials[1].value == pytest.approx(0.7)


def test_a_moved_study_is_reopened_where_it_is_now(tmp_path):
    """The sweep folder and its store moved (and the old place gone): the searcher Tune
    restores, and the copy pickled in tuner.pkl, write to the study where it is now."""
    import pickle
    import shutil

    from nrfer.config import ConfigError
    from sweep.runtime.search import check_study, restore_study_at

    spec = parse_space(SPACE, "s1.yaml")
    old = tmp_path / "old"
    old.mkdir()
    url = f"sqlite:///{old / 'optuna.db'}"
    first = searcher(SweepSearch, spec, url, max_epochs=4)
    play(first, "a", [0.3, 0.4, 0.5, 0.6])
    first.suggest("b")
    first.on_trial_result("b", {"val_acc": 0.2, "training_iteration": 1})
    first.save(str(old / "searcher.pkl"))
    pickled = pickle.dumps(first)  # as in tuner.pkl
    shutil.move(old, tmp_path / "new")
    new_url = f"sqlite:///{tmp_path / 'new' / 'optuna.db'}"
    with pytest.raises(ConfigError, match=r"study file .*old/optuna.db does not exist"):
        check_study(url, "s1")
    check_study(new_url, "s1")
    restore_study_at(new_url)
    try:
        again = pickle.loads(pickled)
        again.restore(str(tmp_path / "new" / "searcher.pkl"))
        for i in (2, 3, 4):
            again.on_trial_result("b", {"val_acc": 0.2 + i / 10, "training_iteration": i})
        again.on_trial_complete("b", {"val_acc": 0.6, "training_iteration": 4})
    finally:
        restore_study_at(None)
    assert not old.exists()  # nothing written where the sweep used to be
    study = optuna.load_study(study_name="s1", storage=new_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].intermediate_values == pytest.approx({1: 0.2, 2: 0.4, 3: 0.5, 4: 0.6})


def test_warm_start_from_a_sweep_with_another_space(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    old_spec = parse_space(SPACE, "s1.yaml")
    old = searcher(SweepSearch, old_spec, url, max_epochs=4)
    for i in range(8):
        values = [0.3 + i / 40] * (4 if i % 2 else 2)  # odd trials ran all epochs
        play(old, f"t{i}", values)
    play(old, "crash", [0.1], error=True)
    old_trials = optuna.load_study(study_name="s1", storage=url).trials

    # the new space: model.stn is gone, optim.lr narrower, a new parameter
    new_space = {**SPACE, "name": "s2", "search": dict(SPACE["search"])}
    del new_space["search"]["model.stn"]
    new_space["search"]["optim.lr"] = {"loguniform": [1e-3, 1e-2]}
    new_space["search"]["model.dropout"] = {"uniform": [0.0, 0.5]}
    spec = parse_space(new_space, "s2.yaml")
    trials = warm_start_trials(spec, url, ["s1"])
    printed = capsys.readouterr().out
    inside = [t for t in old_trials if t.state != TrialState.FAIL and t.params["optim.lr"] >= 1e-3]
    assert len(trials) == len(inside) and 0 < len(inside) < 8
    assert f"warm start from s1: {len(inside)} trials used" in printed
    assert "parameter model.stn is not in this space, dropped" in printed
    assert f"{8 - len(inside)} trials skipped" in printed
    assert all("model.stn" not in t.params for t in trials)
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}

    new = searcher(SweepSearch, spec, url, max_epochs=4, warm_start=trials)
    assert new.suggest("n0")  # TPE proposes from the warm-started study
    study = optuna.load_study(study_name="s2", storage=url)
    assert len(study.trials) == len(inside) + 1
    assert study.trials[0].user_attrs["warm_start_from"].startswith("s1#")

    with pytest.raises(ValueError, match="--warm-start nope: no study of that name"):
        warm_start_trials(spec, url, ["nope"])
