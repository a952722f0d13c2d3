import csv
import json

import numpy as np
import pytest

from helpers import SHARED_VOTES
from nrfer.data.__main__ import main as data_main
from nrfer.data.ferplus import read_ferplus
from nrfer.data.types import VOTE_COLUMNS, DataFormatError

PIX = " ".join(["17"] * 2304)


def write_pair(root, rows, pixel_rows=None):
    """rows: (usage, name, votes[10]). Writes both Microsoft CSVs."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for i, (usage, _, _) in enumerate(rows):
            w.writerow([0, pixel_rows[i] if pixel_rows else " ".join([str(i)] * 2304), usage])
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        for usage, name, v in rows:
            w.writerow([usage, name, *v])
    return root


ROWS = [
    ("Training", "fer0000000.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # happiness
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # not a face
    ("Training", "fer0000002.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),  # no majority; CE keeps it
    # Microsoft's names of FER2013's first PublicTest and PrivateTest faces
    ("PublicTest", "fer0028638.png", [0, 0, 7, 0, 0, 0, 3, 0, 0, 0]),  # surprise
    ("PrivateTest", "fer0032220.png", [1, 0, 0, 0, 0, 0, 0, 9, 0, 0]),  # contempt, outlier dropped
    ("PrivateTest", "fer0032222.png", [0, 0, 0, 0, 0, 0, 0, 0, 8, 2]),  # unknown
]


def test_reader_applies_ferplus_rules_and_splits(tmp_path):
    data = read_ferplus(write_pair(tmp_path / "d", ROWS), "majority")
    assert [len(data.train), len(data.val), len(data.test)] == [1, 1, 1]
    assert data.train.labels.tolist() == [1]
    assert data.val.labels.tolist() == [2] and data.test.labels.tolist() == [7]
    # pixels come from the joined row (row i is filled with the value i)
    assert data.train.images.shape == (1, 1, 48, 48) and data.train.images.dtype == np.uint8
    assert int(data.test.images[0, 0, 0, 0]) == 4
    np.testing.assert_array_equal(data.test.votes[0], ROWS[4][2])

    ce = read_ferplus(tmp_path / "d", "crossentropy")
    assert len(ce.train) == 2
    np.testing.assert_allclose(ce.train.targets[1], [4 / 7, 0, 0, 0, 3 / 7, 0, 0, 0], rtol=1e-6)


def test_summary_cli_prints_one_json_object(tmp_path, capsys):
    write_pair(tmp_path / "d", ROWS)
    argv = ["--dataset", "ferplus", "--root", str(tmp_path / "d"), "--mode", "majority"]
    assert data_main([*argv, "--summary"]) == 0
    out = json.loads(capsys.readouterr().out.strip())
    assert out["mode"] == "majority"
    assert out["splits"]["train"] == {
        "n": 1,
        "per_class": [0, 1, 0, 0, 0, 0, 0, 0],
        "mode": "majority",
    }
    assert out["splits"]["test"]["per_class"][7] == 1


def test_row_count_mismatch_is_named(tmp_path):
    root = write_pair(tmp_path / "d", ROWS)
    lines = (root / "fer2013.csv").read_text().splitlines()
    (root / "fer2013.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataFormatError, match="fer2013.csv has 5 rows but .*fer2013new.csv has 6"):
        read_ferplus(root)


def test_bad_pixels_name_file_and_line(tmp_path):
    pixels = [" ".join(["1"] * 2304)] * len(ROWS)
    pixels[2] = " ".join(["1"] * 2000)
    root = write_pair(tmp_path / "d", ROWS, pixels)
    with pytest.raises(
        DataFormatError, match=r"fer2013\.csv: line 4: pixels has 2000 values, expected 2304"
    ):
        read_ferplus(root)
    pixels[2] = " ".join(["1"] * 2303 + ["abc"])
    write_pair(tmp_path / "d", ROWS, pixels)
    with pytest.raises(DataFormatError, match="line 4: pixels must be integers, found 'abc'"):
        read_ferplus(root)


def test_wrong_columns_misaligned_rows_and_missing_files(tmp_path):
    root = write_pair(tmp_path / "d", ROWS)
    text = (root / "fer2013new.csv").read_text().replace("Image name", "Image")
    (root / "fer2013new.csv").write_text(text)
    with pytest.raises(DataFormatError, match=r"fer2013new\.csv: line 1: columns"):
        read_ferplus(root)
    rows = list(ROWS)
    rows[3] = ("Training", *rows[3][1:])
    root = write_pair(tmp_path / "e", ROWS)
    write_pair(tmp_path / "e2", rows)
    (root / "fer2013new.csv").write_text((tmp_path / "e2" / "fer2013new.csv").read_text())
    with pytest.raises(DataFormatError, match="line 5: Usage 'PublicTest' in .* but 'Training'"):
        read_ferplus(root)
    with pytest.raises(DataFormatError, match="'fer2013.csv' not found in .*put Kaggle's"):
        read_ferplus(tmp_path / "nowhere")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_VOTES.is_file(), reason="real FER+ label file not available")
def test_real_label_file_gives_official_counts(tmp_path):
    """The real fer2013new.csv joined with a generated fer2013.csv of the same 35,887 rows."""
    usages = [row[0] for row in csv.reader(open(SHARED_VOTES))][1:]
    root = tmp_path / "real"
    root.mkdir()
    (root / "fer2013new.csv").write_bytes(SHARED_VOTES.read_bytes())
    with open(root / "fer2013.csv", "w") as f:
        f.write("emotion,pixels,Usage\n")
        f.writelines(f"0,{PIX},{u}\n" for u in usages)
    data = read_ferplus(root, "majority")
    assert [len(data.train), len(data.val), len(data.test)] == [25060, 3199, 3153]
    assert data.test.per_class() == [1090, 893, 396, 384, 273, 18, 83, 16]
    # train in crossentropy mode; val and test stay majority (comparable accuracies)
    ce = read_ferplus(root, "crossentropy").summary()["splits"]
    assert [ce[s]["n"] for s in ("train", "val", "test")] == [27956, 3199, 3153]
    assert [ce[s]["mode"] for s in ("train", "val", "test")] == [
        "crossentropy",
        "majority",
        "majority",
    ]
    assert ce["test"]["per_class"] == data.summary()["splits"]["test"]["per_class"]
