"""The ledger's reconcile on a real sweep folder: what a killed driver left, finished once;
a second reconcile finds nothing to do and changes nothing."""

import json

from helpers import Store, trial_files
from sweep.runtime.ledger import ENDED, Ledger, SavedTrial, ledger_dir
from sweep.runtime.retention import Retention, work_dir


def snapshot(exp, store) -> dict:
    """Everything reconcile may touch: every file under the sweep folder (and its bytes for
    the records), the store's uploads and tags."""
    files = {}
    for path in sorted(exp.rglob("*")):
        if path.is_file():
            rel = str(path.relative_to(exp))
            files[rel] = (
                path.read_text() if path.suffix in (".json", ".yaml") else path.stat().st_size
            )
    return {"files": files, "held": store.held(), "tags": dict(store.tags)}


def left_by_a_killed_driver(exp):
    """Trials in every state a kill can leave, with Tune's saved view of them."""
    ledger = Ledger(exp)
    retention = Retention(ledger, keep=1, mode="max")
    store = Store(exp)
    for trial_id in ("done", "unretained", "unremoved", "unsaved", "norecord", "running"):
        trial_files(exp, trial_id)
    # done: ended, retained (kept), files removed: nothing left to do
    ledger.trial_ended("done", {"val_acc": 0.4}, 0.4, str(exp / "trial_done"))
    ledger.retain("done", 0.4, retention, store)
    ledger.remove_files("done", retention, str(exp / "trial_done"))
    # unretained: its end recorded, then the kill (MLflow never told)
    ledger.trial_ended("unretained", {"val_acc": 0.9}, 0.9, str(exp / "trial_unretained"))
    # unremoved: retained, its files waiting for Tune's saved state
    ledger.trial_ended("unremoved", {"val_acc": 0.2}, 0.2, str(exp / "trial_unremoved"))
    ledger.retain("unremoved", 0.2, retention, store)
    # unsaved: ended after Tune's last saved state: its record goes, it runs again
    ledger.trial_ended("unsaved", {"val_acc": 0.5}, 0.5, str(exp / "trial_unsaved"))
    saved = {
        t: SavedTrial(t, "TERMINATED", str(exp / f"trial_{t}"), s)
        for t, s in (("done", 0.4), ("unretained", 0.9), ("unremoved", 0.2), ("norecord", 0.3))
    }
    saved["running"] = SavedTrial("running", "PAUSED", str(exp / "trial_running"), None)
    return saved, store


def reconcile(exp, saved, store):
    ledger = Ledger(exp)  # as a resume opens it
    return ledger.reconcile(saved, Retention(ledger, keep=1, mode="max"), store), ledger


def test_reconcile_finishes_what_a_kill_left(tmp_path):
    saved, store = left_by_a_killed_driver(tmp_path)
    done, ledger = reconcile(tmp_path, saved, store)
    assert done.forgotten == ["unsaved"]
    assert sorted(done.retained) == ["norecord", "unretained"]
    assert sorted(done.removed) == ["norecord", "unremoved", "unretained"]
    assert done.orphans == ["unsaved"] and done.evictions_left == 0
    assert set(ledger.ended) == {"done", "unretained", "unremoved", "norecord"}
    assert all(r.kept is not None and r.removed for r in ledger.ended.values())
    # keep=1: the best by score (unretained, 0.9) holds the one kept copy
    assert store.held() == {"unretained"} and store.tags["done"] is False
    # only the running trial keeps its files
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["running"]
    assert list((tmp_path / "trial_running").glob("checkpoint_*"))
    for t in ("done", "unretained", "unremoved", "norecord"):
        assert not work_dir(tmp_path, t).exists() and not list(
            (tmp_path / f"trial_{t}").glob("checkpoint_*")
        )
    record = json.loads((ledger_dir(tmp_path) / ENDED / "unretained.json").read_text())
    assert record["kept"] is True and record["removed"] is True


def test_reconcile_twice_is_reconcile_once(tmp_path):
    saved, store = left_by_a_killed_driver(tmp_path)
    reconcile(tmp_path, saved, store)
    once = snapshot(tmp_path, store)
    again, _ = reconcile(tmp_path, saved, store)
    assert (again.forgotten, again.retained, again.removed, again.orphans) == ([], [], [], [])
    assert snapshot(tmp_path, store) == once


def test_an_outage_leaves_the_retention_for_later_and_the_files_in_place(tmp_path):
    saved, store = left_by_a_killed_driver(tmp_path)
    store.down = {"upload", "tag"}
    done, ledger = reconcile(tmp_path, saved, store)
    assert "unretained" not in done.retained and ledger.ended["unretained"].kept is None
    assert (work_dir(tmp_path, "unretained") / "checkpoint" / "best.pt").is_file()
    store.down = set()
    done, ledger = reconcile(tmp_path, saved, store)  # the next resume finishes it
    assert "unretained" in done.retained and ledger.ended["unretained"].removed


def test_a_trial_tune_never_saved_leaves_the_top_k(tmp_path):
    """Killed after a trial's upload and before Tune saved it as ended: the resume runs it
    again under a new id, so the record of it in the top K goes (found by the kill test)."""
    ledger = Ledger(tmp_path)
    retention = Retention(ledger, keep=2, mode="max")
    store = Store(tmp_path)
    for trial_id, score in (("a", 0.9), ("b", 0.5)):
        trial_files(tmp_path, trial_id)
        ledger.trial_ended(trial_id, {"val_acc": score}, score, str(tmp_path / f"trial_{trial_id}"))
        assert ledger.retain(trial_id, score, retention, store) is True
    saved = {"b": SavedTrial("b", "TERMINATED", str(tmp_path / "trial_b"), 0.5)}
    done, _ = reconcile_keep(tmp_path, saved, store, keep=2)
    assert done.forgotten == ["a"]
    assert Retention(Ledger(tmp_path), keep=2, mode="max").kept == {"b": 0.5}


def reconcile_keep(exp, saved, store, keep):
    ledger = Ledger(exp)
    return ledger.reconcile(saved, Retention(ledger, keep=keep, mode="max"), store), ledger
