"""nrfer.evaluate: the same numbers as training's test, cross-dataset class mapping by name,
flip TTA, and what it writes."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import write_rafdb
from nrfer.config import make_config
from nrfer.data import EMOTIONS
from nrfer.data.rafdb_affectnet import CLASSES_7
from nrfer.evaluate import main, map_classes, scores


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config_dict):
    """A FER+ (synthetic) model trained 2 epochs, its result.json with the test it took."""
    from nrfer.train import fit

    out = tmp_path_factory.mktemp("trained") / "run"
    raw = {**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 2}}
    result = fit(make_config(raw), out_dir=out)
    return out, result


def run_json(capsys, *args) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_accuracy_equals_the_training_runs_own_test(trained, capsys, tmp_path):
    out, result = trained
    report = run_json(capsys, "--model", str(out), "--out", str(tmp_path / "ev"))
    assert report["acc"] == result.scores.acc
    assert report["macro_f1"] == result.scores.macro_f1
    assert report["mean_class_acc"] == result.scores.mean_class_acc
    assert report["confusion"] == result.scores.confusion
    # the same per-image predictions as the run kept
    ours = np.load(tmp_path / "ev" / "predictions.npz")
    kept = np.load(result.scores.predictions)
    assert report["n"] == len(kept["labels"]) > 100
    assert (ours["probs"].argmax(1) == kept["probs"].argmax(1)).all()
    assert (ours["labels"] == kept["labels"]).all()
    # confusion numbers and per-class recall agree with the predictions written
    rows = (tmp_path / "ev" / "confusion.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(EMOTIONS)
    assert sum(int(v) for r in rows[1:] for v in r.split(",")[1:]) == report["n"]
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    lines = (tmp_path / "ev" / "predictions.csv").read_text().strip().splitlines()
    assert len(lines) == report["n"] + 1
    again = scores(ours["probs"].astype(np.float32), ours["labels"].astype(np.int64), EMOTIONS)
    assert again["acc"] == pytest.approx(report["acc"])
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["acc"] == report["acc"]
    # calibration: the run's own test and this evaluation agree; the reliability diagram
    assert report["ece"] == pytest.approx(result.scores.ece, abs=1e-6)
    assert report["nll"] == pytest.approx(result.scores.nll, abs=1e-6)
    assert report["vote_tv"] == pytest.approx(result.scores.vote_tv, abs=1e-6)  # votes
    assert 0 <= report["ece"] <= 1 and report["nll"] > 0 and 0 <= report["vote_tv"] <= 1
    bins = report["reliability_bins"]
    assert len(bins) == 15 and sum(b["n"] for b in bins) == report["n"]
    with Image.open(tmp_path / "ev" / "reliability.png") as im:
        assert im.size[0] > 300 and len(set(im.convert("L").getdata())) > 10


def test_flip_tta_averages_face_and_mirror(trained, capsys, tmp_path):
    """With flip TTA a face and its mirror get the same probabilities (the mean of both)."""
    from nrfer.checkpoint import load_checkpoint
    from nrfer.data.types import FERSplit
    from nrfer.evaluate import evaluate_state

    out, _ = trained
    state = load_checkpoint(out / "checkpoint" / "best.pt")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 1, 48, 48), dtype=np.uint8)
    labels = np.arange(6) % 8

    def probs(images, tta):
        split = FERSplit(images, labels, np.eye(8, dtype=np.float32)[labels])
        return evaluate_state(state, split, EMOTIONS, tta=tta)[1]

    flip, mirrored = probs(faces, "flip"), probs(faces[..., ::-1].copy(), "flip")
    np.testing.assert_allclose(flip, mirrored, atol=1e-5)
    plain, plain_mirror = probs(faces, "none"), probs(faces[..., ::-1].copy(), "none")
    np.testing.assert_allclose(flip, (plain + plain_mirror) / 2, atol=1e-5)
    assert not np.allclose(plain, plain_mirror, atol=1e-4)  # so the test can fail
    np.testing.assert_allclose(flip.sum(1), 1, atol=1e-5)


def test_a_ferplus_model_evaluates_on_rafdb_with_its_7_classes(trained, capsys, tmp_path):
    out, _ = trained
    root = write_rafdb(tmp_path / "RAF-DB")
    report = run_json(
        capsys, "--model", str(out), "--dataset", "rafdb", "--root", str(root), "--tta", "flip"
    )
    assert report["class_names"] == list(CLASSES_7) and len(report["class_names"]) == 7
    assert report["dropped_model_classes"] == ["contempt"]
    assert report["n"] == 21 and len(report["confusion"]) == 7
    assert set(report["per_class_recall"]) == set(CLASSES_7)
    assert main(["--model", str(out), "--dataset", "rafdb", "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "model class contempt has no rafdb class: its logit is dropped" in text


def test_classes_map_by_name_and_an_unlearned_class_is_an_error():
    m = map_classes(["Happy", "neutral", "Sad"], ["neutral", "happiness", "sadness"])
    assert m.columns == (1, 0, 2) and m.dropped == ()
    m = map_classes(EMOTIONS, CLASSES_7)
    assert m.dropped == ("contempt",) and len(m.columns) == 7 and not m.identity
    assert map_classes(EMOTIONS, EMOTIONS).identity
    with pytest.raises(ValueError, match="'contempt', which the model never learned"):
        map_classes(CLASSES_7, EMOTIONS, "dataset ferplus")


def test_bad_model_and_uri_name_what_to_do(capsys, tmp_path):
    assert main(["--model", "models:/nrfer@champion"]) == 2
    assert "python -m sweep.commands.evaluate" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_calibration_equals_hand_computed_values():
    from nrfer.metrics import (
        expected_calibration_error,
        negative_log_likelihood,
        vote_total_variation,
    )

    probs = np.array(
        [
            [0.9, 0.1, 0.0],  # confidence 0.9 (bin 14: (0.8667, 0.9333]), right
            [0.6, 0.4, 0.0],  # 0.6 (bin 8: (0.5333, 0.6]), wrong
            [0.2, 0.7, 0.1],  # 0.7 (bin 10: (0.6667, 0.7333]), right
            [0.1, 0.2, 0.7],  # 0.7 (bin 10), wrong
        ]
    )
    labels = np.array([0, 1, 1, 0])
    # bins: {0.9}: |1 - 0.9| = 0.1; {0.6}: |0 - 0.6| = 0.6; {0.7, 0.7}: |0.5 - 0.7| = 0.2
    want = (1 * 0.1 + 1 * 0.6 + 2 * 0.2) / 4
    assert expected_calibration_error(probs, labels) == pytest.approx(want)
    # NLL: -(log 0.9 + log 0.4 + log 0.7 + log 0.1) / 4
    want = -(np.log(0.9) + np.log(0.4) + np.log(0.7) + np.log(0.1)) / 4
    assert negative_log_likelihood(probs, labels) == pytest.approx(want)
    # a probability of 0 for the true class is clamped, not infinite
    assert np.isfinite(negative_log_likelihood(np.array([[1.0, 0.0]]), np.array([1])))
    # TV to the votes over the model's 3 classes (further columns, e.g. unknown/NF, ignored)
    votes = np.array(
        [
            [10, 0, 0, 5],  # -> (1, 0, 0): TV 0.5 * (0.1 + 0.1 + 0) = 0.1
            [5, 5, 0, 0],  # -> (0.5, 0.5, 0): 0.5 * (0.1 + 0.1) = 0.1
            [0, 0, 0, 10],  # no emotion vote: left out
            [0, 0, 4, 0],  # -> (0, 0, 1): 0.5 * (0.1 + 0.2 + 0.3) = 0.3
        ]
    )
    assert vote_total_variation(probs, votes) == pytest.approx((0.1 + 0.1 + 0.3) / 3)
    assert vote_total_variation(probs, np.zeros((4, 4))) is None
    # a bin edge: confidence exactly 1/15 falls in the first bin, 1.0 in the last
    edge = np.array([[1 / 15, 14 / 15], [1.0, 0.0]])
    assert expected_calibration_error(edge, np.array([1, 0])) == pytest.approx(
        (abs(1 - 14 / 15) + 0.0) / 2
    )


def test_degradations_score_the_same_faces_degraded(trained, capsys, tmp_path):
    """--degrade: a row per degradation and severity, each the scores of the test faces
    degraded as nrfer.degrade says (paired with clean: the same faces, the same labels)."""
    from nrfer.checkpoint import load_checkpoint
    from nrfer.data import load_data
    from nrfer.degrade import Degradation
    from nrfer.evaluate import evaluate_state

    out, result = trained
    ev = tmp_path / "ev"
    args = ["--model", str(out), "--out", str(ev), "--degrade", "lowres:8,24", "noise:0.2"]
    report = run_json(capsys, *args, "--degrade-seed", "5")
    assert report["acc"] == result.scores.acc  # clean is the run's own test
    rows = report["degradations"]
    assert [r["degradation"] for r in rows] == ["lowres:8", "lowres:24", "noise:0.2"]
    state = load_checkpoint(out / "checkpoint" / "best.pt")
    split = load_data(make_config(state["config"]).data, sr=False).test
    from dataclasses import replace

    for row, d in zip(rows, (Degradation("lowres", 8), Degradation("lowres", 24)), strict=False):
        degraded = replace(split, images=d.apply(split.images, seed=5))
        expected, _ = evaluate_state(state, degraded, EMOTIONS)
        assert row["acc"] == expected["acc"] and row["ece"] == pytest.approx(expected["ece"])
        assert row["delta_acc"] == pytest.approx(expected["acc"] - report["acc"])
        kept = np.load(ev / f"predictions_{d.key}.npz")
        assert (kept["labels"] == split.labels).all()
        kept_acc = (kept["probs"].astype(np.float32).argmax(1) == split.labels).mean()
        assert kept_acc == pytest.approx(row["acc"], abs=0.02)  # float16: near-ties may flip
    csv_rows = (ev / "degradations.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 4 and csv_rows[1].startswith("lowres:8,lowres,8.0,")
    with Image.open(ev / "degradations.png") as im:
        assert im.size[0] > 500 and len(set(im.convert("L").getdata())) > 10
    # the printed table, clean first
    assert main(["--model", str(out), "--degrade", "lowres:8"]) == 0
    text = capsys.readouterr().out
    assert "| clean |" in text and f"| lowres:8 | {100 * rows[0]['acc']:.2f} |" in text
    # a bad item is refused before anything is evaluated, naming it
    assert main(["--model", str(out), "--degrade", "jpeg:200"]) == 2
    assert "jpeg severity '200': expected an integer in 1..95" in capsys.readouterr().err
    # the flag given twice adds up (the second used to drop the first without a word)
    again = run_json(capsys, "--model", str(out), "--degrade", "lowres:8", "--degrade", "noise:0.2")
    assert [r["degradation"] for r in again["degradations"]] == ["lowres:8", "noise:0.2"]
    # a negative seed: refused by the parser, naming the flag, before any evaluation
    with pytest.raises(SystemExit):
        main(["--model", str(out), "--degrade", "noise:0.2", "--degrade-seed", "-1"])
    err = capsys.readouterr()
    assert "--degrade-seed" in err.err and "must be >= 0" in err.err and err.out == ""
