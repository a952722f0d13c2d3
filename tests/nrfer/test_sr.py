"""SR stage: output sizes, the cache manifest and its invalidation, the learned SR network."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import REPO


def small_data(synthetic_root, n=None):
    from nrfer.config import DataConfig
    from nrfer.data import load_data

    return load_data(DataConfig(dataset="synthetic", root=str(synthetic_root)))


@pytest.mark.parametrize("method", ["bicubic", "lanczos"])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_classic_upscaling_sizes_and_values(method, scale):
    from nrfer.sr import upscale

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 1, 12, 10), dtype=np.uint8)
    out = upscale(images, scale, method)
    assert out.shape == (3, 1, 12 * scale, 10 * scale) and out.dtype == np.uint8
    flat = np.full((1, 1, 6, 6), 77, np.uint8)  # a flat image stays flat
    assert (upscale(flat, scale, method) == 77).all()
    # the values are Pillow's own resampling with that filter (lanczos is not bicubic)
    from PIL import Image

    pil = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    for img, got in zip(images[:, 0], out[:, 0], strict=True):
        want = np.asarray(Image.fromarray(img).resize((10 * scale, 12 * scale), pil[method]))
        np.testing.assert_array_equal(got, want)
    other = upscale(images, scale, "bicubic" if method == "lanczos" else "lanczos")
    assert (other != out).any()


def test_untrained_face_sr_is_bicubic_and_sizes_follow_the_scale():
    from nrfer.sr.net import FaceSR

    x = torch.rand(2, 1, 12, 12)
    for scale in (2, 4, 8):
        net = FaceSR(scale)
        y = net(x)
        bic = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic")
        assert y.shape == (2, 1, 12 * scale, 12 * scale)
        assert torch.allclose(y, bic)  # zero-initialised tail: starts as bicubic
    with pytest.raises(ValueError, match="scale must be one of"):
        FaceSR(3)


def test_cache_is_reused_when_it_matches_and_rebuilt_when_not(tmp_path, synthetic_root):
    from nrfer.sr.cache import ensure_cache, load_cache

    data = small_data(synthetic_root)
    out = tmp_path / "x2"
    folder, manifest, built = ensure_cache(data, "bicubic", 2, out, show_progress=False)
    assert built and (folder / "manifest.json").is_file()
    arrays, m = load_cache(folder)
    for s in ("train", "val", "test"):
        n, c, h, w = data.split(s).images.shape
        assert arrays[s].shape == (n, c, 2 * h, 2 * w)
    assert m["method"] == "bicubic" and m["scale"] == 2 and m["weights_sha256"] is None
    assert set(m["sources"]) == {str(p) for p in data.meta["source_files"]}
    assert all(len(h) == 64 for h in m["sources"].values())

    # same data, same settings: reused, not rebuilt
    _, again, built = ensure_cache(data, "bicubic", 2, out, show_progress=False)
    assert not built and again["build_id"] == manifest["build_id"]
    # a different method in the same folder: rebuilt
    _, other, built = ensure_cache(data, "lanczos", 2, out, show_progress=False)
    assert built and other["build_id"] != manifest["build_id"]
    # changed input images (e.g. a re-exported dataset): rebuilt, never silently reused
    data.train.images[0, 0, 0, 0] ^= 0xFF
    _, third, built = ensure_cache(data, "lanczos", 2, out, show_progress=False)
    assert built and third["inputs"]["train"]["sha256"] != other["inputs"]["train"]["sha256"]
    # a manifest edited by hand to claim other sources: rebuilt
    doc = json.loads((out / "manifest.json").read_text())
    doc["sources"] = {"/elsewhere/fer2013.csv": "0" * 64}
    (out / "manifest.json").write_text(json.dumps(doc))
    _, fourth, built = ensure_cache(data, "lanczos", 2, out, show_progress=False)
    assert built and fourth["build_id"] != third["build_id"]
    # an interrupted build (no manifest) is rebuilt
    (out / "manifest.json").unlink()
    assert ensure_cache(data, "lanczos", 2, out, show_progress=False)[2]


def test_changed_source_file_invalidates_the_cache(tmp_path):
    from nrfer.config import DataConfig
    from nrfer.data import load_data
    from nrfer.data.synthetic import write_ferplus
    from nrfer.sr.cache import ensure_cache

    root = write_ferplus(tmp_path / "fp", seed=1, n_train=40, n_val=10, n_test=10)
    cfg = DataConfig(dataset="ferplus", root=str(root))
    _, first, built = ensure_cache(
        load_data(cfg), "bicubic", 2, tmp_path / "c", show_progress=False
    )
    assert built
    votes = root / "fer2013new.csv"
    lines = votes.read_text().splitlines(keepends=True)
    fields = lines[1].split(",")  # a relabelled face: the votes of two emotions swapped
    fields[2], fields[3] = fields[3], fields[2]
    votes.write_text("".join([lines[0], ",".join(fields), *lines[2:]]))
    _, second, built = ensure_cache(
        load_data(cfg), "bicubic", 2, tmp_path / "c", show_progress=False
    )
    assert built and second["sources"][str(votes)] != first["sources"][str(votes)]


def test_learned_sr_beats_bicubic_after_short_training(synthetic_root):
    from nrfer.sr.train import train_sr

    torch.set_num_threads(2)
    data = small_data(synthetic_root)
    _, report = train_sr(
        data, scale=4, steps=300, lr=2e-3, batch_size=32, features=16, blocks=2, log_every=0
    )
    # x4 from 12 px to 48 px on held-out (val) faces; measured +1.5 dB in ~10 s on 2 cores
    assert report["psnr_model"] > report["psnr_bicubic"] + 0.5, report


def test_cli_builds_with_trained_weights_then_reuses(tmp_path, synthetic_root):
    weights = tmp_path / "sr.pt"
    common = ["--dataset", "synthetic", "--root", str(synthetic_root)]
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "nrfer.sr.train",
            *common,
            "--scale",
            "2",
            "--steps",
            "20",
            "--features",
            "8",
            "--blocks",
            "1",
            "--out",
            str(weights),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    trained = json.loads(p.stdout.strip().splitlines()[-1])
    assert trained["weights"] == str(weights) and "psnr_model" in trained

    cmd = [
        sys.executable,
        "-m",
        "nrfer.sr",
        *common,
        "--scale",
        "2",
        "--method",
        "model",
        "--weights",
        str(weights),
        "--out",
        str(tmp_path / "cache"),
    ]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["built"] and summary["shapes"]["train"][2:] == [96, 96]
    assert "img/s" in first.stderr and "ETA" in first.stderr  # the progress line
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["weights_sha256"] and manifest["method"] == "model"
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert json.loads(second.stdout.strip().splitlines()[-1])["built"] is False

    bad = subprocess.run(
        cmd[:-2] + ["--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "c2")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "nope.pt" in bad.stderr


def test_torchscript_sr_model_and_foreign_files(tmp_path):
    from nrfer.checkpoint import CheckpointError
    from nrfer.sr import upscale
    from nrfer.sr.net import FaceSR, load_sr_model

    rgb = FaceSR(2, channels=3)  # an RGB model, as DIC is: gray faces go through it as RGB
    scripted = torch.jit.trace(rgb, torch.rand(1, 3, 8, 8))
    path = tmp_path / "dic_like.ts"
    scripted.save(str(path))
    model = load_sr_model(path)
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)
    out = upscale(images, 2, "model", model=model)
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="not x4"):
        upscale(images, 4, "model", model=model)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="neither an nrfer SR weights file"):
        load_sr_model(junk)
