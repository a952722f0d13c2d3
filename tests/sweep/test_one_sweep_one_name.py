"""Issue 22: the sweep lock, exit codes, and inputs that were silently wrong before (now
refused with the file, key and lines, or read correctly)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

import launch
from nrfer.config import ConfigError
from nrfer.data.folders import LABEL_HEADER, read_folders
from nrfer.data.types import DataFormatError
from nrfer.predict import read_image
from sweep.runtime.resume import SweepLock
from sweep.runtime.search import study_storage_url
from sweep.spec.space import SpaceError, load_space, parse_space

BASE = {
    "name": "x",
    "data": {"dataset": "synthetic"},
    "fixed": {"train": {"epochs": 2}},
    "search": {"optim.lr": {"choice": [0.1, 1]}},
    "early_stopping": {"name": "fifo"},
}


def refused(change) -> str:
    raw = copy.deepcopy(BASE)
    change(raw)
    with pytest.raises(SpaceError) as e:
        parse_space(raw, "s.yaml")
    return str(e.value)


def test_lock_names_its_holder_and_dies_with_it(tmp_path):
    with SweepLock(tmp_path, "demo"):
        with pytest.raises(ConfigError) as e, SweepLock(tmp_path, "demo"):
            pass
        assert f"sweep 'demo' under {tmp_path} is in use by pid {os.getpid()} on " in str(e.value)
        with SweepLock(tmp_path, "other"):  # another name is another sweep
            pass
    with SweepLock(tmp_path, "demo"):  # released at the end of the first
        pass
    # a holder that dies without a word (SIGKILL) leaves no stale lock behind
    code = (
        "import sys, time; sys.path.insert(0, '.'); from sweep.runtime.resume import SweepLock; "
        f"lock = SweepLock({str(tmp_path)!r}, 'demo').__enter__(); print('held', flush=True); "
        "time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigError, match=f"in use by pid {holder.pid} on"):
        SweepLock(tmp_path, "demo").__enter__()
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    time.sleep(0.1)
    with SweepLock(tmp_path, "demo"):
        pass


def test_exit_codes_tell_success_interrupt_and_total_failure(capsys):
    from dataclasses import replace

    from sweep.runtime import SweepSummary

    done = SweepSummary(
        *("s", "run", "sqlite:///m.db", "1", "i"),
        num_trials=4,
        num_errors=3,
        unfinished=0,
        best=None,
        leaderboard=[],
        importance={},
        wall_s=1.0,
        results=None,
    )
    assert launch.exit_code(done) == 0  # one completed trial is a result
    assert launch.exit_code(replace(done, unfinished=2)) == 3
    assert launch.exit_code(replace(done, num_errors=4)) == 4
    assert "none of its 4 trial(s) completed" in capsys.readouterr().err


def test_duplicate_yaml_keys_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: dup\nbudget: {num_samples: 8}\nsearch:\n  optim.lr: {choice: [0.1]}\n"
        "  optim.lr: {uniform: [0.1, 0.2]}\nbudget: {num_samples: 3}\n"
    )
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert str(e.value) == f"{path}: line 6: key 'budget' is given twice (lines 2 and 6); keep one"
    path.write_text(path.read_text().replace("budget: {num_samples: 3}\n", ""))
    with pytest.raises(SpaceError) as e:
        load_space(path)
    assert (
        str(e.value) == f"{path}: line 5: key 'optim.lr' is given twice (lines 4 and 5); keep one"
    )


def test_choices_reach_the_trial_as_written():
    msg = refused(
        lambda d: d["search"].update({"train.batch_size": {"choice": [4, "8", 8.0, True]}})
    )
    assert "search.train.batch_size.choice: '8' (str) would become 8 (int)" in msg
    msg = refused(lambda d: d["search"].update({"train.batch_size": {"choice": [4, True]}}))
    assert "True (bool) would become 1 (int)" in msg
    msg = refused(lambda d: d["search"].update({"train.batch_size": {"choice": [8, 8]}}))
    assert "8 is listed twice" in msg
    ok = copy.deepcopy(BASE)  # an int for a float key, a bool and a name for one key: fine
    ok["search"]["model.stn"] = {"choice": [True, False, "paper"]}
    assert parse_space(ok, "s.yaml").params[0].args == [0.1, 1]


def test_conditions_on_numbers_and_conflicting_fixed_values_are_refused():
    def cond(d):
        d["search"]["model.resizer.n"] = {"int": [4, 8]}
        d["search"]["model.resizer.r"] = {"int": [1, 2], "when": {"model.resizer.n": 4}}

    assert (
        "search.model.resizer.r.when.model.resizer.n: model.resizer.n is searched with int"
        in refused(cond)
    )
    msg = refused(lambda d: d["early_stopping"].update({"max_epochs": 5}))
    assert "fixed.train.epochs 2 and early_stopping.max_epochs 5 disagree" in msg
    msg = refused(lambda d: d["fixed"].update({"data": {"dataset": "folders"}}))
    assert "fixed.data.dataset 'folders' and data.dataset 'synthetic' disagree" in msg
    same = copy.deepcopy(BASE)  # the same value in both places is no conflict
    same["fixed"]["data"] = {"dataset": "synthetic"}
    same["early_stopping"]["max_epochs"] = 2
    assert parse_space(same, "s.yaml").max_epochs == 2


def test_each_sqlite_store_has_its_own_study_file(tmp_path):
    urls = {
        db: study_storage_url(f"sqlite:///{tmp_path / db}", tmp_path / "runs" / "x")
        for db in ("mlflow.db", "a.db", "b.db")
    }
    assert urls == {
        "mlflow.db": f"sqlite:///{tmp_path / 'optuna.db'}",
        "a.db": f"sqlite:///{tmp_path / 'a.optuna.db'}",
        "b.db": f"sqlite:///{tmp_path / 'b.optuna.db'}",
    }


def _folders(root, images: dict[str, tuple[str, np.ndarray]]):
    """train/ + test/ and a label CSV; images: name -> (folder, pixels)."""
    lines = [",".join(LABEL_HEADER)]
    for k, (name, (folder, pixels)) in enumerate(images.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / folder / name)
        usage = "Training" if folder == "train" else ("PublicTest" if k % 2 else "PrivateTest")
        onehot = ["1.0" if j == k % 8 else "0.0" for j in range(10)]
        lines.append(",".join([usage, name, *onehot, str(k % 8)]))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_sixteen_bit_faces_read_as_predict_reads_them(tmp_path):
    wide = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).astype(np.uint16)
    images = {f"t{k}.png": ("train", np.full((32, 32), 30 * k, np.uint8)) for k in range(8)}
    images["wide.png"] = ("train", wide)
    images |= {
        "v.png": ("test", np.zeros((32, 32), np.uint8)),
        "w.png": ("test", np.ones((32, 32), np.uint8)),
    }
    root = _folders(tmp_path / "f", images)
    data = read_folders(root)
    got = data.train.images[-1, 0]
    np.testing.assert_array_equal(got, read_image(root / "train" / "wide.png"))
    assert (got == 255).mean() < 0.01  # clipped before: 97.8 % white
    np.testing.assert_array_equal(got, np.round(wide / 257.0).astype(np.uint8))
    # one name in two folders: which split would it be? refused, naming both
    Image.fromarray(images["t1.png"][1]).save(root / "test" / "t1.png")
    with pytest.raises(DataFormatError, match=r"image 't1.png' is in both train/ and test/"):
        read_folders(root)


def test_a_huge_image_in_the_folders_reader_is_named(tmp_path, monkeypatch):
    images = {f"t{k}.png": ("train", np.full((32, 32), 30 * k, np.uint8)) for k in range(8)}
    images |= {
        "v.png": ("test", np.zeros((32, 32), np.uint8)),
        "w.png": ("test", np.ones((32, 32), np.uint8)),
    }
    root = _folders(tmp_path / "h", images)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 is "huge" at this limit
    with pytest.raises(
        DataFormatError, match=r"labels\.csv: line 2: image .*t0\.png refused, too many pixels"
    ):
        read_folders(root)


def test_damaged_resume_files_are_named_before_ray(tmp_path):
    from sweep.runtime.ledger import ASHA, SWEEP, Ledger, ledger_dir
    from sweep.runtime.stopping import RULES

    def check(rule: str) -> None:  # what the driver checks before Ray on a resume
        Ledger(exp).check()
        RULES[rule].check(ledger_dir(exp))

    exp = tmp_path / "demo"
    ledger_dir(exp).mkdir(parents=True)
    state, rungs = ledger_dir(exp) / SWEEP, ledger_dir(exp) / ASHA
    for text in ("", "- a list\n", "spec: {}\n", "{not yaml"):
        state.write_text(text)
        with pytest.raises(
            ConfigError, match=rf"{state}: the sweep's state file is (damaged|unreadable)"
        ):
            Ledger(exp).read_sweep()
    state.unlink()
    for text in ("", "brackets: 3\n", "brackets: [[{scores: {}}]]\n"):
        rungs.write_text(text)
        with pytest.raises(ConfigError, match=rf"{rungs}: ASHA's rung records are damaged"):
            check("asha")
    check("fifo")  # FIFO does not read them
    rungs.write_text("brackets: [[{milestone: 1, scores: {t1: 0.5}}]]\n")
    check("asha")
    # the adaptive rule's record: wrong types anywhere are named with the file, before Ray
    from sweep.runtime.ledger import ADAPTIVE
    from sweep.runtime.stopping.adaptive import STATE_VERSION

    record = ledger_dir(exp) / ADAPTIVE
    good = {
        "version": STATE_VERSION,
        "metric": "val_acc",
        "choice": {
            "epoch": 2,
            "trials": 8,
            "threshold": 0.8,
            "rows": [{"epoch": 1, "rho": 0.5, "low": 0.1}],
        },
        "completed": {"t1": [0.1, 0.2, 0.3]},
    }
    record.write_text(yaml.safe_dump(good))
    check("adaptive")
    for bad, what in (
        ({**good, "completed": 7}, "completed: expected a mapping"),
        ({**good, "completed": {"t1": ["x"]}}, r"completed.t1: 'x' is not a number"),
        ({**good, "choice": {**good["choice"], "epoch": "two"}}, "choice.epoch"),
        (
            {**good, "choice": {**good["choice"], "rows": [{"epoch": 1, "rho": "hi", "low": 0}]}},
            "choice.rows.rho",
        ),
        ({**good, "costs": {"t1": 3}}, "costs.t1: expected a mapping"),
        ({**good, "version": 99}, "version 99"),
    ):
        record.write_text(yaml.safe_dump(bad))
        with pytest.raises(
            ConfigError,
            match=rf"{record}: the adaptive early-stopping record is damaged \(.*{what}",
        ):
            check("adaptive")
    check("fifo")  # only the adaptive rule reads it
    # an ended trial's record with a wrong type: named with the field
    from sweep.runtime.ledger import ENDED

    (ledger_dir(exp) / ENDED).mkdir(exist_ok=True)
    bad_end = ledger_dir(exp) / ENDED / "t9.json"
    bad_end.write_text(json.dumps({"completed": True, "result": {}, "score": "high"}))
    with pytest.raises(
        ConfigError, match=rf"{bad_end}: an ended trial's record is damaged .*score: 'high'"
    ):
        Ledger(exp)
    bad_end.unlink()


def test_an_experiment_deleted_in_the_ui_is_named(tmp_path):
    from mlflow.tracking import MlflowClient

    from sweep.tracking.store import check_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    check_experiment(uri, "demo")  # not there yet: fine, the sweep creates it
    client.delete_experiment(client.create_experiment("demo"))
    with pytest.raises(
        ConfigError,
        match=r"MLflow experiment 'demo' at .* is deleted .*mlflow experiments restore --experiment-id \d+",
    ):
        check_experiment(uri, "demo")


def test_ended_trials_are_kept_beside_tune_state(tmp_path):
    import numpy as np

    from sweep.runtime.ledger import Ledger, completed_result

    ended = Ledger(tmp_path / "demo")
    result = {"val_acc": np.float32(0.5), "training_iteration": 3, "config": {"a": 1}}
    ended.trial_ended("t1", result, 0.5, "/t1")
    ended.trial_ended("t2", None, None, None)  # failed
    ended.trial_ended("t2", None, None, None)
    assert len(Ledger(tmp_path / "demo").ended) == 2  # on disk, read back by a resume
    again = Ledger(tmp_path / "demo")
    assert again.final("t2") is None and again.completed() == {"t1"}
    assert again.final("t1") == {"val_acc": 0.5, "training_iteration": 3, "config": {"a": 1}}
    again.trial_ended("t2", {"val_acc": 0.6}, 0.6, None)  # a retry completed it
    again.trial_ended("t2", None, None, None)  # a completed trial stays completed
    assert completed_result(tmp_path / "demo", "t2") == {"val_acc": 0.6}
    again.forget({"t1"})  # t1 ended after Tune's last save: it runs again
    assert set(Ledger(tmp_path / "demo").ended) == {"t2"}
    assert completed_result(tmp_path / "demo", "t1") is None


def test_records_from_before_the_ledger_move_in_once(tmp_path):
    from sweep.runtime.ledger import ASHA, ENDED, KEPT, SWEEP, Ledger, ledger_dir

    old = tmp_path / "old"
    (old / "nrfer_ended").mkdir(parents=True)
    (old / "nrfer_ended" / "t1.json").write_text('{"completed": true, "result": {"val_acc": 0.5}}')
    (old / "nrfer_sweep.yaml").write_text("spec: {a: 1}\nstatus: RUNNING\ninstance: i1\n")
    (old / "nrfer_kept_checkpoints.yaml").write_text("kept: {t1: 0.5}\nevicting: []\n")
    (old / "nrfer_asha_rungs.yaml").write_text("brackets: []\n")
    ledger = Ledger(old)
    assert ledger.final("t1") == {"val_acc": 0.5} and ledger.read_sweep()["instance"] == "i1"
    assert ledger.read_kept() == ({"t1": 0.5}, [])
    assert sorted(p.name for p in ledger_dir(old).iterdir()) == sorted([ASHA, ENDED, KEPT, SWEEP])
    assert sorted(p.name for p in old.iterdir()) == ["nrfer_ledger"]  # moved, not copied

    # older still (a list of ids, no results): refused with what to do
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "nrfer_ended.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match=r"nrfer_ended.yaml: .*too old to resume; start it anew"):
        Ledger(tmp_path / "older")


def test_a_trial_waits_out_a_short_tracking_outage_at_start(tmp_path):
    """The store is away for ~6 s when the trial starts (its folder moved out and back):
    the trial's run is created once it is back, instead of the trial failing at once."""
    import shutil
    import threading

    from mlflow.tracking import MlflowClient

    from sweep.tracking.trial import RunContext, TrialLogger

    home = tmp_path / "store"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("outage")
    parent = client.create_run(exp).info.run_id
    shutil.move(home, tmp_path / "away")
    back = threading.Timer(6.0, lambda: shutil.move(tmp_path / "away", home))
    back.start()
    ctx = RunContext(uri, exp, parent, "outage", "i1")
    t0 = time.monotonic()
    run_id = TrialLogger(ctx, "t1").start(
        config={"optim.lr": 0.1}, sampled={"optim.lr": 0.1}, name="t01"
    )
    back.join()
    assert run_id and time.monotonic() - t0 >= 5.5
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.tags["nrfer.sweep_instance"] == "i1" and run.data.params["optim.lr"] == "0.1"


def test_tracebacks_that_named_nothing_name_the_input(tmp_path):
    import torch
    from safetensors.torch import save_file

    from nrfer.models.pretrained import PretrainedError, read_state_dict
    from nrfer.predict import checked_input_shape
    from sweep.runtime.search import study_names

    with pytest.raises(ConfigError, match=r"--optuna-storage 'nosuchdb://x/y' cannot be opened"):
        study_names("nosuchdb://x/y", "--optuna-storage")
    weights = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(64, 64)}, str(weights))
    weights.write_bytes(weights.read_bytes()[:5000])  # truncated
    with pytest.raises(PretrainedError, match=rf"{weights}: not a readable safetensors file"):
        read_state_dict(weights)
    assert checked_input_shape([1, 48, 48], "ckpt") == (1, 48, 48)
    for shape in ([1, 100000, 100000], [7, 48, 48], [1, 48], "big", [1, 48.0, 48]):
        with pytest.raises(ValueError, match=r"ckpt: input_shape .* is not \[1 or 3 channels"):
            checked_input_shape(shape, "ckpt")


def test_a_bad_value_in_the_ledgers_spec_is_blamed_on_the_ledger(tmp_path, capsys):
    """--force-resume runs the spec the sweep was started with (sweep.yaml): a bad type
    there is an error naming that file, not the space file given this time."""
    import copy

    from sweep.runtime.driver import prepare
    from sweep.runtime.ledger import RUNNING, Ledger
    from sweep.spec.space import load_space

    spec = load_space("demo")
    exp = tmp_path / "demo"
    started = copy.deepcopy(spec.to_dict())
    started["budget"]["num_samples"] = "many"
    Ledger(exp).write_sweep(started, RUNNING)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError) as e:  # SpaceError / ConfigError
        prepare(spec, exp, uri, True, True, None, None)
    assert str(Ledger(exp).sweep_file) in str(e.value) and "num_samples" in str(e.value)
    assert "demo.yaml" not in str(e.value)
