import numpy as np
import pytest
from PIL import Image

from nrfer.data.folders import LABEL_HEADER, read_folders
from nrfer.data.splits import names_of_split
from nrfer.data.types import DataFormatError


def write_layout(root, size=96, rows=None):
    rows = rows or [
        # votes decide where there are votes: emotion 4 (anger) here is not the label
        ("Training", "a.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 4, "train"),
        ("Training", "b.png", [0, 0, 0, 8, 2, 0, 0, 0, 0, 0], 3, "train"),
        ("Training", "", [0] * 9 + [10], 0, None),
        ("PublicTest", "c.png", [0] * 10, 6, "test"),  # no votes: falls back to emotion
        ("PrivateTest", "d.png", [0, 0, 9, 0, 0, 0, 1, 0, 0, 0], 2, "test"),
        # the other classes, so that train has every class
        *[("Training", f"t{k}.png", [0] * 10, k, "train") for k in (0, 2, 4, 5, 6, 7)],
    ]
    for d in ("train", "test"):
        (root / d).mkdir(parents=True, exist_ok=True)
    lines = [",".join(LABEL_HEADER)]
    for i, (usage, name, votes, emotion, folder) in enumerate(rows):
        lines.append(",".join([usage, name, *map(str, votes), str(emotion)]))
        if folder:
            Image.fromarray(np.full((size, size), 10 * i, np.uint8)).save(root / folder / name)
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_reads_any_size_images_and_votes(tmp_path):
    data = read_folders(write_layout(tmp_path / "sr", size=96))
    assert [len(data.train), len(data.val), len(data.test)] == [8, 1, 1]
    assert data.train.images.shape == (8, 1, 96, 96)
    assert data.train.labels.tolist() == [1, 3, 0, 2, 4, 5, 6, 7]
    assert data.val.labels.tolist() == [6] and data.meta["value_columns"] == "votes"
    assert int(data.test.images[0, 0, 0, 0]) == 40


def test_undecodable_and_missing_images_name_the_row(tmp_path):
    root = write_layout(tmp_path / "x")
    (root / "train" / "b.png").write_bytes(b"not a png")
    with pytest.raises(
        DataFormatError, match=r"labels\.csv: line 3: image .*b\.png cannot be decoded"
    ):
        read_folders(root)
    (root / "train" / "b.png").unlink()
    with pytest.raises(DataFormatError, match="line 3: image 'b.png' is not in"):
        read_folders(root)


def test_wrong_columns_are_named(tmp_path):
    root = write_layout(tmp_path / "y")
    (root / "labels.csv").write_text("Usage,Image Name,happy\n")
    with pytest.raises(DataFormatError, match="line 1: columns"):
        read_folders(root)


def test_a_row_given_twice_is_refused_naming_both_lines(tmp_path):
    root = write_layout(tmp_path / "y")
    lines = (root / "labels.csv").read_text().splitlines()
    # two blank (not a face) rows are fine; one image twice would count it twice
    (root / "labels.csv").write_text("\n".join([*lines, lines[3], lines[2]]) + "\n")
    with pytest.raises(
        DataFormatError, match=r"line 14: image 'b.png' is listed twice \(lines 3 and 14\)"
    ):
        read_folders(root)


def test_rafdb_list_with_a_row_twice_is_refused(tmp_path):
    from helpers import write_rafdb
    from nrfer.data.rafdb_affectnet import read_rafdb

    root = write_rafdb(tmp_path / "RAF-DB", n_per_class=1)
    listing = root / "EmoLabel" / "list_patition_label.txt"
    first = listing.read_text().splitlines()[0]
    with open(listing, "a") as f:
        f.write(first + "\n")
    n = len(listing.read_text().splitlines())
    with pytest.raises(
        DataFormatError, match=rf"{n}: image .* is listed twice \(lines 1 and {n}\)"
    ):
        read_rafdb(root)


def write_paper_layout(root, size=64):
    """The paper's own files: fer2013new_jin2.csv with one-hot float rows and an `emotion`
    label; folders train/, valid/ (PrivateTest rows) and test/ (PublicTest rows)."""
    rows = [("Training", k) for k in range(8)] + [("Training", 1), ("Training", 0)]
    rows += [("PrivateTest", 2), ("PrivateTest", 3), ("PublicTest", 1)]
    lines = [",".join(LABEL_HEADER)]
    folder = {"Training": "train", "PrivateTest": "valid", "PublicTest": "test"}
    # the paper's PrivateTest rows are FER2013's PublicTest faces and the other way round
    names = {
        "Training": iter(names_of_split("train")),
        "PrivateTest": iter(names_of_split("val")),
        "PublicTest": iter(names_of_split("test")),
    }
    for i, (usage, k) in enumerate(rows):
        (root / folder[usage]).mkdir(parents=True, exist_ok=True)
        name = next(names[usage])
        Image.fromarray(np.full((size, size, 3), 20 * i, np.uint8)).save(
            root / folder[usage] / name
        )
        onehot = ["1.0" if j == k else "0.0" for j in range(10)]
        lines.append(",".join([usage, name, *onehot, str(k)]))
    (root / "fer2013new_jin2.csv").write_text("\n".join(lines) + "\n")
    return root


def test_paper_files_are_labels_split_by_folder(tmp_path):
    from nrfer.config import make_config
    from nrfer.data.__main__ import main as data_main
    from nrfer.train import build_loss

    root = write_paper_layout(tmp_path / "paper")
    data = read_folders(root, "crossentropy")
    summary = data.summary()["splits"]
    # valid/ holds PrivateTest rows and is the validation split; test/ the PublicTest row
    assert [summary[s]["n"] for s in ("train", "val", "test")] == [10, 2, 1]
    assert data.val.labels.tolist() == [2, 3] and data.test.labels.tolist() == [1]
    assert data.train.votes is None and data.meta["value_columns"] == "labels"
    np.testing.assert_array_equal(data.train.targets[3], np.eye(8)[3])
    # no votes: PDLS smooths with the FER+ vote prior, not the identity (plain CE)
    loss = build_loss(make_config({"loss": {"name": "pdls"}}), data)
    assert loss.prior.shape == (8, 8) and float(loss.prior.diagonal().max()) < 0.95
    assert (
        data_main(
            ["--dataset", "folders", "--root", str(root), "--mode", "crossentropy", "--summary"]
        )
        == 0
    )


def test_empty_splits_and_missing_classes_say_why(tmp_path):
    root = write_layout(tmp_path / "e")
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(x for x in lines if "PublicTest" not in x) + "\n")
    with pytest.raises(DataFormatError, match=r"labels\.csv: the val split is empty: no row"):
        read_folders(root)
    root = write_layout(tmp_path / "c")
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join(x for x in lines if "t7.png" not in x) + "\n")
    with pytest.raises(DataFormatError, match="the train split has no image of contempt"):
        read_folders(root)
