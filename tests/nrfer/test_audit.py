"""The leakage audit: twins planted across splits under the transformations a real dataset
has are found (synthetic and real faces), sets of distinct real photos give no pair, and
`nrfer evaluate --exclude` scores the test set without the leaked faces, as a hand count."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from audit import plant, plant_in_ferplus, score, synthetic_splits  # noqa: E402

from nrfer.data import audit as A  # noqa: E402

ASTRONAUT_FACE = (150, 40, 250, 140)  # scikit-image's astronaut, 512x512
HOPPER_FACE = (160, 150, 213, 180)  # matplotlib's grace_hopper.jpg (x, y, w, h)


def real_photos() -> np.ndarray:
    """Distinct real pictures at 48x48: scikit-image's 100 LFW faces and its LFW non-face
    patches that hold a picture, the astronaut's face and Grace Hopper's."""
    import matplotlib.cbook
    from scipy.ndimage import gaussian_filter
    from skimage import data

    lfw = (data.lfw_subset() * 255).round().astype(np.uint8)
    out = [np.asarray(Image.fromarray(f).resize((48, 48), Image.Resampling.BICUBIC)) for f in lfw]
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        x, y, w, h = HOPPER_FACE
        out.append(np.asarray(im.convert("L").crop((x, y, x + w, y + w)).resize((48, 48))))
    astronaut = Image.fromarray(data.astronaut()).convert("L")
    out.append(np.asarray(astronaut.crop(ASTRONAUT_FACE).resize((48, 48))))
    faces = np.stack(out)
    # a smooth shade (sky, a wall) has no picture to tell apart: such patches are one
    # another mirrored or shifted, so the non-face patches keep only those with detail
    detail = faces - gaussian_filter(faces.astype(np.float32), (0, 2, 2))
    pictured = detail.std(axis=(1, 2)) > 4
    pictured[:100] = pictured[-2:] = True
    return faces[pictured]


def as_splits(faces: np.ndarray, rng) -> dict[str, np.ndarray]:
    order = rng.permutation(len(faces))
    n = len(faces) // 4
    return {
        "train": faces[order[2 * n :]],
        "val": faces[order[:n]],
        "test": faces[order[n : 2 * n]],
    }


def test_distinct_real_photos_hold_no_pair_and_planted_twins_are_all_found():
    rng = np.random.default_rng(0)
    photos = real_photos()
    assert 150 < len(photos) <= 202
    clean = A.audit(A.Faces.of(as_splits(photos, rng)))
    assert clean.pairs == [], [(p.kind, p.correlation) for p in clean.pairs]
    splits, planted = plant(as_splits(photos, rng), per_kind=6, seed=1)
    found = score(A.audit(A.Faces.of(splits)), planted)
    # JPEG at quality 30 of a 25 px LFW crop blown up to 48 px, and brightening that clips
    # most of a bright picture, can leave too little of it: a few are not found
    assert found["recall_all"] >= 0.95, found
    assert min(found["recall"].values()) >= 0.85, found
    assert found["false_pairs"] == 0, found


def test_planted_twins_among_synthetic_faces():
    splits = synthetic_splits(1600, 200, 200, seed=5)
    splits, planted = plant(splits, per_kind=30, seed=2)
    result = A.audit(A.Faces.of(splits))
    found = score(result, planted)
    assert found["recall_all"] >= 0.99, found
    assert min(found["recall"].values()) >= 0.95, found
    # faces drawn from a few parameters: a few different draws are nearly one picture
    assert found["false_pair_rate"] <= 0.01, found
    kinds = {(p.kind) for p in result.pairs}
    assert {"exact", "near", "mirrored", "shifted"} <= kinds


def test_hash_index_finds_every_pair_within_the_radius():
    """Multi-index hashing against all pairs: the same pairs within RADIUS bits."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    flips = [
        base[k] ^ np.uint64(sum(1 << int(b) for b in rng.choice(64, k % 9, replace=False)))
        for k in range(300)
    ]
    hashes = np.concatenate([base, np.array(flips, dtype=np.uint64)])
    q, i, d = A.within(hashes, hashes, A.RADIUS, per_face=len(hashes))
    got = {(int(a), int(b)) for a, b in zip(q, i, strict=True) if a != b}
    dist = A.popcount(hashes[:, None] ^ hashes[None, :])
    want = {(int(a), int(b)) for a, b in zip(*np.nonzero(dist <= A.RADIUS), strict=True) if a != b}
    assert got == want and len(want) >= 2 * sum(k % 9 <= A.RADIUS for k in range(300))
    assert (d == A.popcount(hashes[q] ^ hashes[i])).all()


def test_audit_command_and_evaluate_without_the_leaked_faces(
    synthetic_root, one_epoch_model, tmp_path, capsys
):
    from nrfer.data.ferplus import read_ferplus
    from nrfer.evaluate import main as evaluate_main
    from sweep.cli import main as nrfer_main

    root = tmp_path / "ferplus"
    planted = plant_in_ferplus(synthetic_root, root, per_kind=1)
    out = tmp_path / "audit"
    argv = ["data", "audit", "--dataset", "ferplus", "--root", str(root), "--out", str(out)]
    assert nrfer_main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = read_ferplus(root)
    assert summary["pairs"] == len(rows) and summary["faces"] == sum(
        map(len, (data.train, data.val, data.test))
    )
    cross = {(r["face_a"], r["face_b"]): r for r in rows}
    for _, twin, kind in planted:
        (found,) = [k for k, f in enumerate(data.test.images) if (f[0] == twin).all()]
        test_index = int(found)
        hits = [
            r for (a, b), r in cross.items() if b == f"test:{test_index}" and a.startswith("train:")
        ]
        assert hits, f"planted {kind} twin of test:{test_index} not found"
        want = {"identical": "exact", "jpeg30": "near", "mirrored": "mirrored"}[kind]
        assert any(r["kind"] == want for r in hits)
        assert all(r["split_a"] == "train" and r["split_b"] == "test" for r in hits)
    assert summary["leaked"]["test"] >= 3 and "have a twin in train or val" in printed
    assert (out / "contact_sheet.png").stat().st_size > 1000
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[1] >= 3 * 96
    # evaluate: the full test set and the test set without the leaked faces, by hand
    ev = tmp_path / "ev"
    args = ["--model", str(one_epoch_model), "--dataset", "ferplus", "--root", str(root)]
    assert (
        evaluate_main([*args, "--exclude", str(out / "audit.csv"), "--out", str(ev), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kept = np.load(ev / "predictions.npz")
    probs, labels = kept["probs"], kept["labels"]
    leaked = {
        int(r[f"face_{x}"].split(":")[1])
        for r in rows
        for x, y in (("a", "b"), ("b", "a"))
        if r[f"split_{x}"] == "test" and r[f"split_{y}"] in ("train", "val")
    }
    keep = np.array([k not in leaked for k in range(len(labels))])
    w = report["without_leaked"]
    assert w["dropped"] == len(leaked) == summary["leaked"]["test"]
    assert w["n"] == report["n"] - len(leaked) == int(keep.sum())
    assert w["acc"] == pytest.approx((probs[keep].argmax(1) == labels[keep]).mean())
    assert report["acc"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert json.loads((ev / "metrics.json").read_text())["without_leaked"]["dropped"] == len(leaked)
    # an audit of other data is refused by name, before the model runs
    body = (root / "fer2013.csv").read_text().splitlines()
    audited = " ".join(str(v) for v in data.test.images[min(leaked), 0].ravel())
    (test_row,) = [
        k for k, line in enumerate(body) if f",{audited}," in line and line.endswith("PrivateTest")
    ]
    pixels = body[test_row].split(",")
    pixels[1] = " ".join(["0"] * 2304)
    body[test_row] = ",".join(pixels)
    (root / "fer2013.csv").write_text("\n".join(body) + "\n")
    assert evaluate_main([*args, "--exclude", str(out / "audit.csv")]) == 2
    err = capsys.readouterr().err
    assert f"test:{min(leaked)} is not the face that was audited" in err


def test_audit_of_rafdb_colour_faces_of_another_size(tmp_path, capsys):
    """RAF-DB's 100x100 colour faces: a train face copied into test, and another mirrored
    there, are found by name, with their labels."""
    from helpers import write_rafdb
    from nrfer.data.audit_cli import main

    root = write_rafdb(tmp_path / "RAF-DB", n_per_class=3)
    aligned = root / "Image" / "aligned"
    files = sorted(aligned.iterdir())
    faces = synthetic_splits(len(files), 0, 0, seed=9)["train"]  # faces, not noise
    for path, face in zip(files, faces, strict=True):
        Image.fromarray(face).convert("RGB").resize((100, 100)).save(path, quality=95)
    (aligned / "test_30001_aligned.jpg").write_bytes(
        (aligned / "train_10000_aligned.jpg").read_bytes()
    )
    with Image.open(aligned / "train_20002_aligned.jpg") as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            aligned / "test_50000_aligned.jpg", quality=95
        )
    assert (
        main(["--dataset", "rafdb", "--root", str(root), "--out", str(tmp_path / "a"), "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with open(tmp_path / "a" / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    cross = [r for r in rows if r["split_a"] != r["split_b"]]
    assert len(cross) == 2 and summary["leaked"]["test"] == 2
    assert sorted(r["kind"] for r in cross) == ["exact", "mirrored"]
    assert all(r["split_b"] == "test" and r["same_label"] == "0" for r in cross)
