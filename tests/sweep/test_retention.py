"""The retention policy on real folders: the top K trials' best.pt go to MLflow, everything
of an ended trial is deleted, a resumed sweep goes on from the recorded top K."""

import json

import pytest

from sweep.retention import KEPT_FILE, Retention, work_dir


def trial_files(exp, trial_id: str) -> tuple:
    """A trial as a sweep leaves it: its work folder with best.pt, two Tune checkpoints."""
    work = work_dir(exp, trial_id)
    (work / "checkpoint").mkdir(parents=True)
    (work / "checkpoint" / "best.pt").write_bytes(b"w" * 100)
    (work / "previews").mkdir()
    tune_dir = exp / f"trial_{trial_id}"
    for i in (3, 4):
        (tune_dir / f"checkpoint_00000{i}").mkdir(parents=True)
        (tune_dir / f"checkpoint_00000{i}" / "last.pt").write_bytes(b"s" * 300)
    (tune_dir / "result.json").write_text("{}")
    return work, tune_dir


@pytest.mark.parametrize("mode", ["max", "min"])
def test_top_k_kept_the_rest_deleted_and_a_resume_goes_on(tmp_path, mode):
    uploaded, dropped = [], []

    def upload(best):
        uploaded.append(best.parent.parent.name)
        return True

    sign = 1 if mode == "max" else -1
    scores = {"a": 0.5, "b": 0.7, "c": 0.6, "d": None, "e": 0.9, "f": 0.1}
    r = Retention(tmp_path, keep=2, mode=mode)
    kept = {}
    for trial_id, score in scores.items():
        work, tune_dir = trial_files(tmp_path, trial_id)
        s = None if score is None else sign * score
        kept[trial_id] = r.end_trial(trial_id, s, tune_dir, upload, dropped.append)
        # whatever the decision: no optimiser state and no work folder left
        assert not work.exists() and not list(tune_dir.glob("checkpoint_*"))
        assert (tune_dir / "result.json").is_file()  # Tune's own record stays
    # a, b uploaded; c pushes out a; d diverged (never); e pushes out c; f too low
    assert uploaded == ["a", "b", "c", "e"] and dropped == ["a", "c"]
    assert kept == {"a": True, "b": True, "c": True, "d": False, "e": True, "f": False}
    assert set(r.kept) == {"b", "e"}
    assert json.loads((tmp_path / KEPT_FILE).read_text()) == {"b": sign * 0.7, "e": sign * 0.9}

    # the resumed driver reads the record: a trial must beat the kept ones again
    again = Retention(tmp_path, keep=2, mode=mode)
    trial_files(tmp_path, "g")
    assert again.end_trial("g", sign * 0.8, None, upload, dropped.append) is True
    assert dropped[-1] == "b" and set(again.kept) == {"e", "g"}


def test_a_failed_upload_keeps_everything_for_a_retry(tmp_path):
    r = Retention(tmp_path, keep=None, mode="max")  # all
    work, tune_dir = trial_files(tmp_path, "a")
    assert r.end_trial("a", 0.5, tune_dir, lambda _: False, lambda _: None) is None
    assert (work / "checkpoint" / "best.pt").is_file() and list(tune_dir.glob("checkpoint_*"))
    assert r.end_trial("a", 0.5, tune_dir, lambda _: True, lambda _: None) is True
    assert not work.exists() and r.kept == {"a": 0.5}


def test_keep_zero_uploads_nothing_and_orphans_are_swept(tmp_path):
    r = Retention(tmp_path, keep=0, mode="max")
    trial_files(tmp_path, "a")
    assert r.end_trial("a", 1.0, None, lambda _: pytest.fail("uploaded"), None) is False
    trial_files(tmp_path, "known")
    trial_files(tmp_path, "orphan")
    assert r.sweep_orphans({"known"}) == ["orphan"]
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["known"]


def test_a_damaged_record_names_the_file(tmp_path):
    (tmp_path / KEPT_FILE).write_text("[1, 2")
    with pytest.raises(ValueError, match=rf"{tmp_path / KEPT_FILE} is damaged"):
        Retention(tmp_path, keep=3, mode="max")


def test_keep_checkpoints_in_the_space_file(tmp_path):
    from sweep.space import SpaceError, parse_space

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
