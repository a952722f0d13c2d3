"""nrfer.degrade: each degradation changes a face as specified, deterministically by seed,
and bad specifications name the item and what is allowed."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from nrfer.degrade import Degradation, by_kind, from_mapping, parse


def faces(n=6, size=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, size, size), dtype=np.uint8)


def test_lowres_12_is_12x12_blocks_of_the_box_average():
    x = faces()
    y = Degradation("lowres", 12).apply(x)
    assert y.shape == x.shape and y.dtype == np.uint8
    for face, out in zip(x[:, 0].astype(np.float64), y[:, 0], strict=True):
        blocks = face.reshape(12, 4, 12, 4).mean(axis=(1, 3))  # 4x4 px per block
        assert np.abs(out[::4, ::4] - blocks).max() <= 1  # box average, rounded
        assert (out == np.repeat(np.repeat(out[::4, ::4], 4, 0), 4, 1)).all()
        assert len(np.unique(out, axis=0)) <= 12 and len(np.unique(out, axis=1).T) <= 12
    # 16 and 24: 3x3 and 2x2 px blocks; an uneven 20: still 20 distinct rows and columns
    for side in (16, 24, 20):
        out = Degradation("lowres", side).apply(x)[0, 0]
        rows = [i for i in range(1, 48) if (out[i] != out[i - 1]).any()]
        assert len(rows) == side - 1  # side runs of equal rows


def test_blur_is_a_gaussian_of_that_sigma():
    x = np.zeros((1, 1, 64, 64), np.uint8)
    x[0, 0, 32, :] = 255  # a 1-px line: its blurred profile is the Gaussian itself
    for sigma in (1.0, 2.0, 3.0):
        profile = Degradation("blur", sigma).apply(x)[0, 0, :, 10].astype(np.float64)
        rows = np.arange(64)
        mean = (profile * rows).sum() / profile.sum()
        sd = np.sqrt((profile * (rows - mean) ** 2).sum() / profile.sum())
        assert mean == pytest.approx(32, abs=0.01)
        assert sd == pytest.approx(sigma, rel=0.06)


def test_jpeg_is_a_pil_round_trip_at_that_quality_and_lower_is_worse():
    x = np.repeat(faces(2, seed=1)[:, :, ::6, ::6].repeat(6, 2).repeat(6, 3), 1, 1)
    y20 = Degradation("jpeg", 20).apply(x)
    buf = io.BytesIO()
    Image.fromarray(x[0, 0]).save(buf, format="JPEG", quality=20)
    assert (y20[0, 0] == np.asarray(Image.open(buf))).all()
    err = {q: np.abs(Degradation("jpeg", q).apply(x).astype(int) - x).mean() for q in (20, 50, 90)}
    assert err[20] > err[50] > err[90] > 0


def test_noise_has_that_std_and_is_fixed_by_the_seed():
    x = np.full((4, 1, 48, 48), 128, np.uint8)
    d = Degradation("noise", 0.05)
    y = d.apply(x, seed=3)
    assert (y.astype(float) - 128).std() == pytest.approx(0.05 * 255, rel=0.03)
    assert (y == d.apply(x, seed=3)).all()  # deterministic by seed
    assert (y != d.apply(x, seed=4)).any()
    assert (y != Degradation("noise", 0.06).apply(x, seed=3)).any()


def test_occlude_blacks_out_that_fraction_at_seeded_places():
    x = np.full((20, 1, 48, 48), 200, np.uint8)
    y = Degradation("occlude", 0.25).apply(x, seed=0)
    for face in y[:, 0]:
        rows, cols = np.nonzero(face == 0)
        assert len(rows) == 24 * 24  # a quarter of 48x48, one square
        assert rows.max() - rows.min() == cols.max() - cols.min() == 23
    corners = {(int(np.nonzero(f == 0)[0][0]), int(np.nonzero(f == 0)[1][0])) for f in y[:, 0]}
    assert len(corners) > 10  # at different places
    assert (y == Degradation("occlude", 0.25).apply(x, seed=0)).all()


def test_colour_faces_keep_their_channels():
    x = np.random.default_rng(0).integers(0, 256, (2, 3, 48, 48), dtype=np.uint8)
    for spec in ("lowres:12", "blur:1", "jpeg:50", "noise:0.05", "occlude:0.25"):
        (d,) = parse([spec])
        y = d.apply(x)
        assert y.shape == x.shape and y.dtype == np.uint8 and (y != x).any(), spec


def test_parse_reads_the_issue_example_and_names_bad_items():
    ds = parse("lowres:12,16,24 blur:1,2 jpeg:20,50 noise:0.05 occlude:0.25".split())
    assert [d.label for d in ds] == [
        "lowres:12", "lowres:16", "lowres:24", "blur:1", "blur:2", "jpeg:20", "jpeg:50",
        "noise:0.05", "occlude:0.25",
    ]  # fmt: skip
    assert [d.key for d in ds][:1] == ["lowres_12"]
    assert [d.label for d in by_kind(ds)["lowres"]] == ["lowres:24", "lowres:16", "lowres:12"]
    assert from_mapping({"lowres": [12, 24], "jpeg": 20}, "study") == parse(
        ["lowres:12,24", "jpeg:20"]
    )
    for bad, words in (
        ("pixelate:4", "KIND one of lowres, blur, jpeg, noise, occlude"),
        ("lowres:12.5", "lowres severity '12.5': expected an integer in 2..1024"),
        ("jpeg:0", "expected an integer in 1..95"),
        ("occlude:1.5", "occlude severity '1.5': expected a number in 0.01..0.9"),
        ("noise:", "is not KIND:SEVERITY"),
        ("blur:x", "blur severity 'x'"),
    ):
        with pytest.raises(ValueError, match="--degrade") as e:
            parse([bad])
        assert words in str(e.value), (bad, str(e.value))
    with pytest.raises(ValueError, match="study.eval_degradations.blur: expected a severity"):
        from_mapping({"blur": "big"}, "study.eval_degradations")
    with pytest.raises(ValueError, match="lowres must be at most their size"):
        Degradation("lowres", 64).apply(faces())


def test_blur_matches_opencv_reference():
    x = faces(1)
    ref = cv2.GaussianBlur(x[0, 0], (0, 0), 1.5, borderType=cv2.BORDER_REFLECT_101)
    assert (Degradation("blur", 1.5).apply(x)[0, 0] == ref).all()
