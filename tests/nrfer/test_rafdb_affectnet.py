"""RAF-DB (basic) and AffectNet readers on small fixtures in their real layouts, and the
class count (7 or 8) following the dataset through model head, loss and reports."""

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY_VIT


def face(label: int, i: int, size: int = 24) -> Image.Image:
    """An RGB face-ish image whose content depends on the label (learnable, deterministic)."""
    rng = np.random.default_rng(label * 1000 + i)
    img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    img[:, : (label + 1) * size // 9] += 150
    return Image.fromarray(img)


@pytest.fixture
def rafdb_root(tmp_path):
    root = tmp_path / "RAF-DB" / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    lines = []
    for split, per_class in (("train", 6), ("test", 2)):
        n = 0
        for label in range(1, 8):
            for _ in range(per_class):
                n += 1
                name = f"{split}_{n:05d}.jpg"
                face(label, n).save(root / "Image" / "aligned" / f"{split}_{n:05d}_aligned.jpg")
                lines.append(f"{name} {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def affectnet_root(tmp_path):
    root = tmp_path / "AffectNet"
    for split, per_class in (("train_set", 5), ("val_set", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "annotations").mkdir(parents=True)
        i = 0
        for label in range(11):  # 8-10: none, uncertain, no face
            for _ in range(per_class):
                face(label % 8, i).save(root / split / "images" / f"{i}.jpg")
                # the release stores the label as a numpy string
                np.save(root / split / "annotations" / f"{i}_exp.npy", np.array(str(label)))
                i += 1
    return root


def test_rafdb_reader_maps_classes_and_carves_val_from_train(rafdb_root):
    from nrfer.data.rafdb_affectnet import CLASSES_7, read_rafdb

    data = read_rafdb(rafdb_root)
    assert data.class_names == CLASSES_7 and data.num_classes == 7
    assert len(data.test) == 14 and len(data.train) + len(data.val) == 42
    assert data.val.per_class(7) == [1] * 7  # 10% of 6 per class, at least one
    assert data.train.images.shape[1:] == (1, 24, 24)  # grayscale like FER+
    # RAF label 4 (happiness) is our class 1; label 7 (neutral) our class 0
    lines = (rafdb_root / "EmoLabel" / "list_patition_label.txt").read_text().split("\n")
    test_lines = [ln for ln in lines if ln.startswith("test_")]
    expected = [
        CLASSES_7.index(n)
        for n in ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
    ]
    assert data.test.labels.tolist() == [expected[int(ln.split()[1]) - 1] for ln in test_lines]
    prior = data.meta["prior"]
    assert prior.shape == (7, 7) and np.allclose(prior.sum(1), 1)
    assert (np.diag(prior) > 0.5).all()
    assert read_rafdb(rafdb_root, image_size=32).test.images.shape[-2:] == (32, 32)
    again = read_rafdb(rafdb_root)
    assert (again.val.images == data.val.images).all()  # seeded split


def test_rafdb_errors_name_file_and_line(rafdb_root):
    from nrfer.data import DataFormatError
    from nrfer.data.rafdb_affectnet import read_rafdb

    labels = rafdb_root / "EmoLabel" / "list_patition_label.txt"
    good = labels.read_text()
    labels.write_text(good.replace("train_00003.jpg 1", "train_00003.jpg 9"))
    with pytest.raises(DataFormatError, match=r"list_patition_label.txt:3: label 9 is not in 1-7"):
        read_rafdb(rafdb_root)
    labels.write_text(good)
    (rafdb_root / "Image" / "aligned" / "test_00002_aligned.jpg").unlink()
    with pytest.raises(DataFormatError, match="test_00002_aligned.jpg does not exist"):
        read_rafdb(rafdb_root)
    (rafdb_root / "Image" / "aligned" / "test_00002_aligned.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="cannot be decoded"):
        read_rafdb(rafdb_root)
    with pytest.raises(DataFormatError, match="no list_patition_label.txt"):
        read_rafdb(rafdb_root / "Image")


def test_affectnet_reader_drops_labels_over_7_and_maps_classes(affectnet_root):
    from nrfer.data import EMOTIONS
    from nrfer.data.rafdb_affectnet import read_affectnet

    data = read_affectnet(affectnet_root)
    assert data.class_names == EMOTIONS and data.num_classes == 8
    assert data.meta["dropped_labels_over_7"] == 3 * 5 + 3 * 2
    assert len(data.test) == 16 and len(data.train) + len(data.val) == 40
    # AffectNet 2 (sad) -> our sadness (3); 3 (surprise) -> our surprise (2)
    assert data.test.labels.tolist() == [
        EMOTIONS.index(n)
        for n in (
            "neutral",
            "happiness",
            "sadness",
            "surprise",
            "fear",
            "disgust",
            "anger",
            "contempt",
        )
        for _ in range(2)
    ]
    assert data.meta["prior"].shape == (8, 8)


@pytest.mark.parametrize("dataset", ["rafdb", "affectnet"])
def test_class_count_follows_the_dataset_through_training(
    dataset, rafdb_root, affectnet_root, tmp_path
):
    from nrfer.checkpoint import load_checkpoint
    from nrfer.config import make_config
    from nrfer.train import fit

    root, k = (rafdb_root, 7) if dataset == "rafdb" else (affectnet_root, 8)
    cfg = make_config(
        {
            "data": {
                "dataset": dataset,
                "root": str(root),
                "sr": {"method": "bicubic", "scale": 2, "cache_dir": str(tmp_path / "sr")},
            },
            "model": {
                "backbone": "vit_tiny_patch16_224",
                "backbone_args": TINY_VIT,
                "resizer": {"enabled": True, "n": 4},
            },
            "loss": {"name": "fpdls"},  # needs the mapped prior: these sets have no votes
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
        }
    )
    result = fit(cfg, out_dir=tmp_path / "run")
    assert len(result.class_names) == k
    assert np.array(result.scores.confusion).shape == (k, k)
    assert len(result.scores.per_class_recall) == k
    best = load_checkpoint(tmp_path / "run" / "checkpoint" / "best.pt")
    head_out = [v for n, v in best["model"].items() if n.startswith("head") and v.ndim == 2][-1]
    assert head_out.shape[0] == k
    assert best["input_shape"][-1] == 48  # 24 px faces through x2 bicubic SR
    assert list((tmp_path / "sr").glob("bicubic-x2-*/manifest.json"))
    torch.set_num_threads(2)


def test_predictor_applies_the_training_sr_stage(rafdb_root, tmp_path):
    from nrfer.config import make_config
    from nrfer.predict import Predictor
    from nrfer.train import fit

    cfg = make_config(
        {
            "data": {
                "dataset": "rafdb",
                "root": str(rafdb_root),
                "sr": {"method": "lanczos", "scale": 2, "cache_dir": str(tmp_path / "sr")},
            },
            "model": {"backbone": "vit_tiny_patch16_224", "backbone_args": TINY_VIT},
            "train": {"epochs": 1, "batch_size": 16, "device": "cpu"},
        }
    )
    fit(cfg, out_dir=tmp_path / "run")
    pred = Predictor.from_path(tmp_path / "run")
    faces = [np.asarray(face(3, 900 + i).convert("L")) for i in range(3)]
    x = pred.preprocess(faces)
    assert x.shape == (3, 1, 48, 48)
    from nrfer.sr import upscale

    want = upscale(np.stack(faces)[:, None], 2, "lanczos") / 255.0
    assert np.allclose(x.numpy(), want, atol=1e-6)  # the 24 px faces, x2 lanczos, as in training
    assert pred.predict_proba(faces).shape == (3, 7)


@pytest.mark.parametrize("dataset", ["rafdb", "affectnet"])
def test_registry_facts_are_what_the_reader_gives(dataset, rafdb_root, affectnet_root):
    """The dry run builds models from the registry's facts without reading data: they must
    be what the reader returns (classes in order, 1 channel), also through input_shape."""
    from nrfer.config import make_config
    from nrfer.data import DATASETS, load_data
    from sweep.commands.plan import input_shape

    root = rafdb_root if dataset == "rafdb" else affectnet_root
    cfg = make_config({"data": {"dataset": dataset, "root": str(root), "image_size": 24}})
    data = load_data(cfg.data, sr=False)
    facts = DATASETS.props(dataset)
    assert tuple(data.class_names) == tuple(facts["class_names"])
    assert data.train.images.shape[1] == facts["channels"] == 1
    assert input_shape(cfg) == tuple(data.train.images.shape[1:])
    assert facts["root"] == "folder"


def test_every_dataset_entry_states_its_facts():
    from nrfer.data import DATASETS, EMOTIONS

    for name in DATASETS.names():
        facts = DATASETS.props(name)
        assert set(facts) == {"class_names", "channels", "root", "check", "face_size"}, name
        assert facts["face_size"] in (48, None), name  # FER2013's 48 px, or read from files
        assert set(facts["class_names"]) <= set(EMOTIONS) and facts["channels"] in (1, None)
        assert callable(facts["check"]), name
