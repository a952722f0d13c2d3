import numpy as np
import pytest
from PIL import Image

from nrfer.data.folders import LABEL_HEADER, read_folders
from nrfer.data.types import DataFormatError


def write_layout(root, size=96, rows=None):
    rows = rows or [
        ("Training", "a.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], 1, "train"),
        ("Training", "b.png", [0, 0, 0, 8, 2, 0, 0, 0, 0, 0], 3, "train"),
        ("Training", "", [0] * 9 + [10], 0, None),
        ("PublicTest", "c.png", [0] * 10, 6, "test"),  # no votes: falls back to emotion
        ("PrivateTest", "d.png", [0, 0, 9, 0, 0, 0, 1, 0, 0, 0], 2, "test"),
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
    assert [len(data.train), len(data.val), len(data.test)] == [2, 1, 1]
    assert data.train.images.shape == (2, 1, 96, 96)
    assert data.train.labels.tolist() == [1, 3] and data.val.labels.tolist() == [6]
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
