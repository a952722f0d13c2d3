"""The retention policy on real folders: the top K trials' best.pt go to MLflow, everything
of an ended trial is deleted, a resumed sweep goes on from the recorded top K."""

import pytest
import yaml

from helpers import Store, trial_files
from sweep.runtime.ledger import KEPT, LEDGER, Ledger, ledger_dir
from sweep.runtime.retention import Retention, tune_state_time


def end(r, store, trial_id, score, tune_dir=None):
    """What the driver does for an ended trial: retain it, then (Tune's state saved) its files."""
    kept = r.end_trial(trial_id, score, store)
    if kept is not None:
        r.remove_files(trial_id, tune_dir)
    return kept


@pytest.mark.parametrize("mode", ["max", "min"])
def test_top_k_kept_the_rest_deleted_and_a_resume_goes_on(tmp_path, mode):
    store = Store(tmp_path)
    sign = 1 if mode == "max" else -1
    scores = {"a": 0.5, "b": 0.7, "c": 0.6, "d": None, "e": 0.9, "f": 0.1}
    r = Retention(Ledger(tmp_path), keep=2, mode=mode)
    kept = {}
    for trial_id, score in scores.items():
        work, tune_dir = trial_files(tmp_path, trial_id)
        s = None if score is None else sign * score
        kept[trial_id] = end(r, store, trial_id, s, tune_dir)
        # whatever the decision: no optimiser state and no work folder left
        assert not work.exists() and not list(tune_dir.glob("checkpoint_*"))
        assert (tune_dir / "result.json").is_file()  # Tune's own record stays
        assert len(store.held()) <= 2
    # a, b uploaded; c pushes out a; d diverged (never); e pushes out c; f too low
    assert kept == {"a": True, "b": True, "c": True, "d": False, "e": True, "f": False}
    assert store.held() == set(r.kept) == {"b", "e"}
    assert store.tags == {"a": False, "b": True, "c": False, "d": False, "e": True, "f": False}
    record = yaml.safe_load((ledger_dir(tmp_path) / KEPT).read_text())
    assert record == {"kept": {"b": sign * 0.7, "e": sign * 0.9}, "evicting": []}

    # the resumed driver reads the record: a trial must beat the kept ones again
    again = Retention(Ledger(tmp_path), keep=2, mode=mode)
    trial_files(tmp_path, "g")
    assert end(again, store, "g", sign * 0.8) is True
    assert store.held() == set(again.kept) == {"e", "g"}


def test_an_eviction_cut_short_is_finished_later(tmp_path):
    """The trial pushed out keeps its best.pt in MLflow while deleting it fails (an outage,
    or a driver killed between the record and the delete): the record says so, and a later
    trial's end or the resumed driver deletes it; never more than K are left."""
    store = Store(tmp_path)
    r = Retention(Ledger(tmp_path), keep=1, mode="max")
    trial_files(tmp_path, "a")
    trial_files(tmp_path, "b")
    assert end(r, store, "a", 0.5) is True
    store.down = {"drop"}
    assert end(r, store, "b", 0.9) is True  # b in, a out; deleting a's copy fails
    assert store.held() == {"a", "b"} and r.evicting == ["a"]
    again = Retention(Ledger(tmp_path), keep=1, mode="max")  # the killed driver's resume
    assert again.kept == {"b": 0.9} and again.evicting == ["a"]
    store.down = set()
    assert again.finish_evictions(store) == 0
    assert store.held() == {"b"} and store.tags["a"] is False
    assert Retention(Ledger(tmp_path), keep=1, mode="max").evicting == []


def test_a_failed_upload_or_tag_keeps_everything_for_a_retry(tmp_path):
    store = Store(tmp_path)
    r = Retention(Ledger(tmp_path), keep=None, mode="max")  # all
    work, tune_dir = trial_files(tmp_path, "a")
    for down in ("upload", "tag"):
        store.down = {down}
        assert end(r, store, "a", 0.5, tune_dir) is None
        assert (work / "checkpoint" / "best.pt").is_file() and list(tune_dir.glob("checkpoint_*"))
    store.down = set()
    assert end(r, store, "a", 0.5, tune_dir) is True  # the retry decides the same
    assert not work.exists() and r.kept == {"a": 0.5} and store.tags == {"a": True}


def test_keep_zero_uploads_nothing_and_orphans_are_swept(tmp_path):
    store = Store(tmp_path)
    store.down = {"upload"}  # never asked
    r = Retention(Ledger(tmp_path), keep=0, mode="max")
    trial_files(tmp_path, "a")
    assert end(r, store, "a", 1.0) is False and store.tags == {"a": False}
    trial_files(tmp_path, "known")
    trial_files(tmp_path, "orphan")
    assert r.sweep_orphans({"known"}) == ["orphan"]
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["known"]


def test_tune_state_time_is_its_newest_saved_state(tmp_path):
    """Newest by its name (the session's start): a restored Tuner syncs older sessions'
    files back, so an older one can have the newer mtime."""
    import os

    assert tune_state_time(tmp_path) == 0.0
    older, newer = (
        "experiment_state-2026-12-03_14-58-05.json",
        "experiment_state-2026-12-03_15-00-00.json",
    )
    for name, t in ((newer, 100.0), (older, 300.0)):
        (tmp_path / name).write_text("{}")
        os.utime(tmp_path / name, (t, t))
    (tmp_path / "other.json").write_text("{}")
    assert tune_state_time(tmp_path) == 100.0


def test_no_record_of_ours_is_a_file_a_restored_tuner_syncs_back(tmp_path):
    """Tune copies the sweep folder's top-level .json / .pkl files at a restore and syncs
    its copies back every few seconds: a record of ours there would be reverted."""
    from sweep.runtime.ledger import ASHA, ENDED, SWEEP

    assert not LEDGER.endswith((".json", ".pkl")) and "/" not in LEDGER
    assert all(name.endswith(".yaml") for name in (KEPT, SWEEP, ASHA)) and "." not in ENDED


def test_a_damaged_record_names_the_file(tmp_path):
    for damaged in ("[1, 2", "[1, 2]", '{"kept": {"a": "x"}, "evicting": []}'):
        ledger_dir(tmp_path).mkdir(exist_ok=True)
        (ledger_dir(tmp_path) / KEPT).write_text(damaged)
        with pytest.raises(ValueError, match=rf"{ledger_dir(tmp_path) / KEPT} is damaged"):
            Retention(Ledger(tmp_path), keep=3, mode="max")


def test_keep_checkpoints_in_the_space_file(tmp_path):
    from sweep.spec.space import SpaceError, parse_space

    base = {
        "name": "k",
        "data": {"dataset": "synthetic", "root": str(tmp_path)},
        "search": {"optim.lr": {"loguniform": [1e-4, 1e-2]}},
    }
    assert parse_space(base).tracking.keep_checkpoints == 3
    assert (
        parse_space({**base, "tracking": {"keep_checkpoints": "all"}}).tracking.keep_checkpoints
        is None
    )
    assert parse_space({**base, "tracking": {"keep_checkpoints": 0}}).tracking.keep_checkpoints == 0
    with pytest.raises(SpaceError, match=r"tracking.keep_checkpoints.*count >= 0 of trials or all"):
        parse_space({**base, "tracking": {"keep_checkpoints": -1}})
