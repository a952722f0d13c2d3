"""Careless and hostile input to the nrfer commands: one `error: <where>: <what>` line and
exit 2 (no traceback), and none of the cases that used to give silently wrong results."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SHARED_VOTES
from nrfer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nrfer.config import ConfigError, make_config
from nrfer.data import DataFormatError
from nrfer.data.__main__ import main as data_main
from nrfer.data.ferplus import read_ferplus
from nrfer.data.ferplus_names import expected_name
from nrfer.predict import main as predict_main
from nrfer.predict import read_image
from nrfer.sr.__main__ import main as sr_main
from nrfer.train import fit
from nrfer.train import main as train_main


def run(main, argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def write_ferplus(root, vote_rows, n_faces=None):
    """Microsoft's two files: `vote_rows` = (usage, name, 10 votes) and as many face rows."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, (usage, _, _) in enumerate(vote_rows[:n_faces]):
            w.writerow([0, " ".join([str(i % 256)] * 2304), usage])
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *"n h s sa a d f c u nf".split()])
        for usage, name, votes in vote_rows:
            w.writerow([usage, name, *votes])
    # the header must be Microsoft's
    text = (root / "fer2013new.csv").read_text().splitlines()
    text[0] = (
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    )
    (root / "fer2013new.csv").write_text("\n".join(text) + "\n")
    return root


HAPPY = [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]
ROWS = [
    ("Training", "fer0000000.png", HAPPY),
    ("Training", "fer0000001.png", HAPPY),
    ("Training", "fer0000002.png", HAPPY),
    ("PublicTest", "fer0028638.png", HAPPY),  # FER2013's first PublicTest face
    ("PrivateTest", "fer0032220.png", HAPPY),  # and first PrivateTest face
]


# -- data files: silently wrong before ----------------------------------------------------


@pytest.mark.skipif(not SHARED_VOTES.is_file(), reason="real FER+ label file not available")
def test_microsofts_own_file_passes_the_name_check_row_by_row():
    """The check is built from the real fer2013new.csv: all 35,887 names where they are."""
    with open(SHARED_VOTES, newline="") as f:
        names = [row[1].strip() for row in list(csv.reader(f))[1:]]
    assert len(names) == 35887
    assert sum(name != expected_name(i) for i, name in enumerate(names)) == 0
    assert sum(name == "" for name in names) == 173


def test_a_vote_block_shifted_inside_training_is_refused(tmp_path):
    """A full-length vote file with Microsoft's names (the real one when it is here), three
    rows inside Training moved down by one: every count matches, only the names show it."""
    if SHARED_VOTES.is_file():
        with open(SHARED_VOTES, newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0], rows[1:]
    else:
        header = [
            "Usage",
            "Image name",
            *"neutral happiness surprise sadness anger disgust fear contempt unknown NF".split(),
        ]
        body = [["Training", expected_name(i), *map(str, HAPPY)] for i in range(35887)]
    moved = body[:1000] + [body[1002]] + body[1000:1002] + body[1003:]
    root = tmp_path / "shifted"
    root.mkdir()
    with open(root / "fer2013new.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *moved])
    (root / "fer2013.csv").write_text("emotion,pixels,Usage\n")  # never reached
    with pytest.raises(DataFormatError) as e:
        read_ferplus(root)
    assert (
        f"fer2013new.csv: line 1002: Image name {expected_name(1002)!r}, but Microsoft's file "
        f"has {expected_name(1000)!r} on this row: the vote rows are shifted"
    ) in str(e.value)


def test_a_subset_with_names_out_of_order_is_refused(tmp_path):
    rows = [ROWS[0], ROWS[2], ROWS[1], ROWS[3], ROWS[4]]
    with pytest.raises(
        DataFormatError, match=r"line 4: Image name 'fer0000001.png' does not come after line 3"
    ):
        read_ferplus(write_ferplus(tmp_path / "d", rows))


@pytest.mark.parametrize("bad", ["nan", "inf", "-1"])
def test_non_finite_or_negative_votes_are_refused_with_the_line(tmp_path, bad):
    rows = [*ROWS[:2], ("Training", "fer0000002.png", [bad, *HAPPY[1:]]), *ROWS[3:]]
    with pytest.raises(
        DataFormatError, match=r"fer2013new.csv: line 4: vote counts must be finite and >= 0"
    ):
        read_ferplus(write_ferplus(tmp_path / "d", rows))


def test_utf8_bom_is_read_and_a_latin1_byte_is_named(tmp_path, capsys):
    root = write_ferplus(tmp_path / "d", ROWS)
    plain = read_ferplus(root)
    votes = root / "fer2013new.csv"
    votes.write_bytes(b"\xef\xbb\xbf" + votes.read_bytes())  # as Excel saves it
    with_bom = read_ferplus(root)
    assert [len(with_bom.train), len(with_bom.val), len(with_bom.test)] == [3, 1, 1]
    np.testing.assert_array_equal(with_bom.train.votes, plain.train.votes)

    votes.write_bytes(votes.read_bytes().replace(b"Training,fer0000001", b"Tr\xe9ining,fer0000001"))
    rc, err = run(data_main, ["--dataset", "ferplus", "--root", str(root)], capsys)
    assert rc == 2 and "fer2013new.csv: line 3: not UTF-8 text (byte 0xe9)" in err


@pytest.mark.parametrize(
    "prior, message",
    [
        ([[1, -2], [1, 1]], "loss.prior: row 0: values must be finite and >= 0"),
        ([[0, 0], [1, 1]], "loss.prior: row 0: all zero"),
        ([[1, 0, 0], [0, 1]], "loss.prior: must be K rows of K values"),
    ],
)
def test_a_bad_prior_is_refused_with_its_key(prior, message):
    with pytest.raises(ConfigError, match=message):
        make_config({"loss": {"prior": prior}}, "t.yaml")


def test_a_prior_of_the_wrong_size_is_refused_before_training(tiny_config_dict):
    raw = {**tiny_config_dict, "loss": {"name": "fpdls", "prior": [[1, 0], [0, 1]]}}
    with pytest.raises(ConfigError, match="loss.prior: 2x2, but the data have 8 classes"):
        fit(make_config(raw, "t"), out_dir=None)


# -- checkpoints -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config_dict):
    out = tmp_path_factory.mktemp("trained")
    raw = {**tiny_config_dict, "train": {**tiny_config_dict["train"], "epochs": 1}}
    result = fit(make_config(raw, "t"), out_dir=out)
    return out, raw, result


def test_checkpoint_errors_name_the_file_and_the_part(trained, tmp_path, capsys):
    out, raw, _ = trained
    best = out / "checkpoint" / "best.pt"
    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump(raw))
    # --resume best.pt: the weights-only file, not the run state
    rc, err = run(
        train_main,
        ["--config", str(config), "--resume", str(best), "--out", str(tmp_path / "a")],
        capsys,
    )
    assert rc == 2 and f"--resume {best}: is a best-model checkpoint" in err and "last.pt" in err

    # another architecture: the weights do not fit
    other = {
        **raw,
        "model": {
            **raw["model"],
            "backbone_args": {**raw["model"]["backbone_args"], "embed_dim": 64},
        },
    }
    config.write_text(yaml.safe_dump(other))
    last = out / "checkpoint" / "last.pt"
    rc, err = run(
        train_main,
        [
            "--config",
            str(config),
            "--resume",
            str(last),
            "--force-resume",
            "--out",
            str(tmp_path / "b"),
        ],
        capsys,
    )
    assert rc == 2 and f"--resume {last}: its model does not fit this run's model" in err

    # another optimiser: its state does not fit
    other = {**raw, "optim": {"name": "sgd", "lr": 0.01}}
    config.write_text(yaml.safe_dump(other))
    rc, err = run(
        train_main,
        [
            "--config",
            str(config),
            "--resume",
            str(last),
            "--force-resume",
            "--out",
            str(tmp_path / "c"),
        ],
        capsys,
    )
    assert rc == 2 and "its optimizer does not fit" in err

    # our format, a key missing
    state = load_checkpoint(best)
    del state["config"]
    save_checkpoint(
        {k: v for k, v in state.items() if k not in ("format", "version")}, tmp_path / "nocfg.pt"
    )
    rc, err = run(
        predict_main, ["--model", str(tmp_path / "nocfg.pt"), str(tmp_path / "x.png")], capsys
    )
    assert rc == 2 and "nocfg.pt: a model checkpoint without config" in err
    rc, err = run(predict_main, ["--model", str(out), "--device", "banana", "x.png"], capsys)
    assert rc == 2 and "--device: 'banana' is not one of auto, cpu, cuda, cuda:N" in err


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/nrfer-pwned",))


def test_a_pickle_with_code_is_refused_without_pointing_at_the_unsafe_option(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "nrfer-checkpoint", "x": Payload()}, path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value) and "refused" in str(e.value)
    rc, err = run(predict_main, ["--model", str(path), "x.png"], capsys)
    assert rc == 2 and "evil.pt is not a readable checkpoint" in err and "weights_only" not in err
    assert not __import__("os").path.exists("/tmp/nrfer-pwned")


# -- command-line values -----------------------------------------------------------------------


def test_command_line_values_get_one_error_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (train_main, ["--out", str(afile)], f"--out {afile}: is a file"),
        (
            train_main,
            ["--set", "train.seed=99999999999999999999999"],
            "train.seed: Input should be less than or equal to 4294967295",
        ),
        (
            train_main,
            ["--set", "data.synthetic.seed=-1"],
            "data.synthetic.seed: Input should be greater than or equal to 0",
        ),
        (
            train_main,
            ["--set", "model.input_size=[1,2]"],
            "model.input_size: Input should be a valid integer",
        ),
        (
            train_main,
            ["--set", "train.device=banana"],
            "train.device: device 'banana' is not one of auto, cpu, cuda, cuda:N",
        ),
    ]
    for main, argv, message in cases:
        rc, err = run(main, argv, capsys)
        assert rc == 2 and message in err, (argv, err)
    with pytest.raises(SystemExit) as e:  # argparse's own error path: exit 2, the flag named
        sr_main(["--out", str(tmp_path / "c"), "--batch-size", "0"])
    assert e.value.code == 2 and "--batch-size: must be >= 1" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train_main(["--out", str(afile), "--debug"])


# -- prediction inputs ----------------------------------------------------------------------------


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    face = (np.arange(48 * 48).reshape(48, 48) % 256).astype(np.uint16) * 257  # full 16-bit range
    Image.fromarray(face).save(tmp_path / "face16.png")
    img = read_image(tmp_path / "face16.png")
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, (face // 257).astype(np.uint8))
    assert (img == 255).mean() < 0.01  # it used to be 99.5 % white


def test_tiny_images_warn_and_bombs_fail_alone(trained, tmp_path, capsys, monkeypatch):
    out, _, _ = trained
    Image.fromarray(np.full((1, 1), 128, np.uint8)).save(tmp_path / "dot.png")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        read_image(tmp_path / "dot.png")
    assert any("1x1 px is below 16 px" in str(w.message) for w in seen)

    Image.fromarray(np.full((48, 48), 90, np.uint8)).save(tmp_path / "good.png")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # 10,000 px > 2x the limit: a bomb
    rc = predict_main(
        ["--model", str(out), "--json", str(tmp_path / "bomb.png"), str(tmp_path / "good.png")]
    )
    captured = capsys.readouterr()
    assert rc == 1  # one image failed, the other answered
    answers = [json.loads(line) for line in captured.out.splitlines()]
    assert [a["image"] for a in answers] == [str(tmp_path / "good.png")]
    assert "bomb.png: refused, too many pixels" in captured.err


# -- the SR cache ------------------------------------------------------------------------------


def test_an_sr_cache_edited_after_its_build_is_never_reused(tmp_path):
    from nrfer.config import DataConfig
    from nrfer.data import load_data
    from nrfer.sr.apply import upscale
    from nrfer.sr.cache import CacheError, ensure_cache, load_cache

    cfg = DataConfig(
        synthetic={"seed": 1, "n_train": 16, "n_val": 8, "n_test": 8}, root=str(tmp_path / "syn")
    )
    data = load_data(cfg, sr=False)
    folder = tmp_path / "cache"
    ensure_cache(data, "bicubic", 2, folder, device="cpu", show_progress=False)
    assert ensure_cache(data, "bicubic", 2, folder, device="cpu", show_progress=False)[2] is False

    # a bicubic cache relabelled lanczos by hand: refused, rebuilt as real lanczos
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "method": "lanczos"}))
    with pytest.raises(CacheError, match="manifest.json was edited after the build"):
        load_cache(folder)
    _, rebuilt, built = ensure_cache(data, "lanczos", 2, folder, device="cpu", show_progress=False)
    assert built and rebuilt["method"] == "lanczos"
    arrays, _ = load_cache(folder)
    np.testing.assert_array_equal(arrays["val"], upscale(data.val.images, 2, "lanczos"))

    # train.npy replaced by zeros of the same shape: refused, rebuilt
    np.save(folder / "train.npy", np.zeros_like(arrays["train"]))
    with pytest.raises(CacheError, match="train.npy was changed after the build"):
        load_cache(folder)
    assert ensure_cache(data, "lanczos", 2, folder, device="cpu", show_progress=False)[2] is True
    assert load_cache(folder)[0]["train"].any()

    # a manifest with a key missing: an error naming it, never a KeyError
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["outputs"]["test"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="SR cache .*cache: manifest.json"):
        load_cache(folder)
