"""FER+ splits are FER2013's, by face; Microsoft's FER2013* folder layout reads as FERPlus.

Fixtures: the paper's CSV layout built from Microsoft's real names (`names_of_split`), and
real rows of the FERPlus repository's `label.csv` files (tests/data/ferplus_folders, MIT).
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nrfer.config import make_config
from nrfer.data import load_data
from nrfer.data.__main__ import main as data_main
from nrfer.data.ferplus_folders import FOLDER_VOTES, MS_FOLDERS, NEW_VOTES, read_ferplus_folders
from nrfer.data.folders import LABEL_HEADER, read_folders
from nrfer.data.splits import canonical_split, names_of_split, resolve_splits, split_of_row
from nrfer.data.types import VOTE_COLUMNS, DataFormatError

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "ferplus_folders"
SWAPPED = {"train": "Training", "val": "PrivateTest", "test": "PublicTest"}  # the paper's names


def test_fer2013_rows_and_names():
    assert [split_of_row(r) for r in (0, 28708, 28709, 32297, 32298, 35886)] == [
        "train", "train", "val", "val", "test", "test"
    ]  # fmt: skip
    assert [len(names_of_split(s)) for s in ("train", "val", "test")] == [28558, 3579, 3573]
    assert canonical_split("fer0028638.png") == "val"  # FER2013's first PublicTest face
    assert canonical_split("fer0032220.png") == "test"  # and its first PrivateTest face
    assert canonical_split("fer0006953.png") == "train"  # named twice by Microsoft, both Training
    assert canonical_split("fer9999999.png") is None and canonical_split("a.png") is None


def _paper_tree(root: Path, folders: str, n=(40, 12, 9)) -> dict[str, list[str]]:
    """The paper's fer2013new_jin2.csv (one-hot labels, its swapped Usage names) over
    Microsoft's real names spread through each split; images in train/ + test/ (two
    folders, as the reference README says) or train/ + valid/ + test/ (its loader)."""
    picked = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        names = names_of_split(split)
        picked[split] = [names[i] for i in np.linspace(0, len(names) - 1, k).astype(int)]
    label = {"val": 3, "test": 1}  # every val face sadness, every test face happiness
    folder = {"train": "train", "val": "valid", "test": "test"}
    if folders == "two":
        folder["val"] = "test"
    lines = [",".join(LABEL_HEADER)]
    for split, names in picked.items():
        (root / folder[split]).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            k = label.get(split, i % 8)
            Image.fromarray(np.full((64, 64), 3 * i, np.uint8)).save(root / folder[split] / name)
            onehot = ["1.0" if j == k else "0.0" for j in range(10)]
            lines.append(",".join([SWAPPED[split], name, *onehot, str(k)]))
    (root / "fer2013new_jin2.csv").write_text("\n".join(lines) + "\n")
    return picked


@pytest.mark.parametrize("folders", ["two", "three"])
def test_paper_csv_reads_fer2013_splits(tmp_path, folders, capsys):
    picked = _paper_tree(tmp_path / folders, folders)
    data = read_folders(tmp_path / folders, "majority", "fer2013new_jin2.csv")
    assert [len(data.train), len(data.val), len(data.test)] == [40, 12, 9]
    assert set(data.val.labels.tolist()) == {3} and set(data.test.labels.tolist()) == {1}
    err = capsys.readouterr().err
    if folders == "two":  # only the Usage column says, and it is the paper's swap
        assert "PublicTest/PrivateTest are swapped relative to FER2013" in err
        assert "swapped" in data.summary()["notes"][0]
    else:  # valid/ and test/ are FER2013's splits: nothing to say
        assert "swapped" not in err and "notes" not in data.summary()
    assert len(picked["val"]) == 12


def test_a_mix_that_is_no_swap_names_the_rows(tmp_path):
    _paper_tree(tmp_path / "m", "two")
    path = tmp_path / "m" / "fer2013new_jin2.csv"
    lines = path.read_text().splitlines()
    # one val face (PrivateTest in the paper's names) relabelled PublicTest: neither layout
    first_val = next(i for i, x in enumerate(lines) if x.startswith("PrivateTest"))
    lines[first_val] = lines[first_val].replace("PrivateTest", "PublicTest", 1)
    path.write_text("\n".join(lines) + "\n")
    name = lines[first_val + 1].split(",")[1]  # the first row that now disagrees
    with pytest.raises(DataFormatError) as e:
        read_folders(tmp_path / "m", "majority", "fer2013new_jin2.csv")
    msg = str(e.value)
    assert "fer2013new_jin2.csv: 20 of 61 FER+ images are not in FER2013's split" in msg
    assert f"line {first_val + 2}: {name} is PublicTest in FER2013, Usage says PrivateTest" in msg
    with pytest.raises(DataFormatError, match="line 1: fer0028638.png is PublicTest in FER2013"):
        resolve_splits(["fer0028638.png", "x.png"], ["train", "test"], "f.csv", ["line 1", "l2"])


def test_ferplus_csvs_with_swapped_usage_read_fer2013_splits(tmp_path, capsys):
    """Kaggle + Microsoft CSVs whose Usage names val and test the paper's way round."""
    from nrfer.data.ferplus import read_ferplus

    happy, sad = [0, 10, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]
    rows = [(SWAPPED["train"], n, happy) for n in names_of_split("train")[:5]]
    rows += [(SWAPPED["val"], n, sad) for n in names_of_split("val")[:3]]
    rows += [(SWAPPED["test"], n, happy) for n in names_of_split("test")[:2]]
    root = tmp_path / "csv"
    root.mkdir()
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows([0, " ".join(["7"] * 2304), u] for u, _, _ in rows)
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        w.writerows([u, n, *v] for u, n, v in rows)
    data = read_ferplus(root)
    assert [len(data.train), len(data.val), len(data.test)] == [5, 3, 2]
    assert data.val.labels.tolist() == [3, 3, 3]  # FER2013's PublicTest faces, not the file's
    assert "swapped relative to FER2013" in capsys.readouterr().err


def test_synthetic_faces_carry_their_splits_names(tmp_path):
    from nrfer.data.ferplus import read_votes_csv
    from nrfer.data.synthetic import write_ferplus

    root = write_ferplus(tmp_path / "syn", seed=1, n_train=30, n_val=10, n_test=10)
    usages, names, _ = read_votes_csv(root / "fer2013new.csv")
    usage = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    assert all(canonical_split(n) == usage[u] for u, n in zip(usages, names, strict=True) if n)
    with pytest.raises(ValueError, match="larger than FER2013's 3579 named faces"):
        write_ferplus(tmp_path / "big", n_train=8, n_val=4000, n_test=8)


def _ms_process(votes: list[float], mode: str) -> int | None:
    """An independent transcription of Microsoft's FERPlus `_process_data` + the trainer's
    filter (src/ferplus.py): the index of the top emotion kept, None when dropped."""
    raw = [0.0 if v < 1.0 + sys.float_info.epsilon else float(v) for v in votes]
    total = sum(raw)
    emotion = [0.0] * 10
    unknown = [0.0] * 8 + [1.0, 0.0]
    if mode == "majority":
        top = max(raw)
        emotion = unknown if not top > 0.5 * total else emotion
        if top > 0.5 * total:
            emotion[raw.index(top)] = top
    else:
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(10):
                if raw[i] == top:
                    emotion[i], raw[i] = top, 0
                    part += emotion[i]
                    count += 1
                    if i >= 8:
                        valid = False
                        if sum(emotion) > top:
                            emotion[i] = 0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    s = sum(emotion)
    if s == 0:
        return None
    dist = [e / s for e in emotion]
    k = int(np.argmax(dist))
    return k if k < 8 else None


def _ms_tree(root: Path) -> Path:
    """Microsoft's layout from the real label.csv rows, a stand-in 48x48 PNG per name."""
    shutil.copytree(FIXTURE, root)
    for folder in MS_FOLDERS.values():
        for i, row in enumerate(csv.reader(open(root / folder / "label.csv"))):
            face = np.full((48, 48), i % 256, np.uint8)
            Image.fromarray(face).save(root / folder / row[0], compress_level=0)
    return root


def _expected_counts(root: Path, mode: str) -> dict[str, list[int]]:
    out = {}
    for split, folder in MS_FOLDERS.items():
        counts = [0] * 8
        for row in csv.reader(open(root / folder / "label.csv")):
            k = _ms_process([float(x) for x in row[2:]], mode if split == "train" else "majority")
            if k is not None:
                counts[k] += 1
        out[split] = counts
    return out


@pytest.mark.parametrize("mode", ["majority", "crossentropy"])
def test_microsoft_folders_match_an_independent_ferplus(tmp_path, mode, capsys):
    root = _ms_tree(tmp_path / "ms")
    want = _expected_counts(root, mode)
    data = read_ferplus_folders(root, mode)
    got = {s: data.split(s).per_class() for s in ("train", "val", "test")}
    assert got == want
    assert sum(want["train"]) > 250 and sum(want["test"]) > 250  # real rows, most kept
    assert data.train.images.shape[1:] == (1, 48, 48) and data.train.votes.shape[1] == 10
    # val and test are read in majority mode whatever the training mode
    assert np.isin(data.val.targets, [0.0, 1.0]).all()
    # the CLI: the same summary through `ferplus_folders`, and `folders` / `ferplus` detect it
    for dataset in ("ferplus_folders", "folders", "ferplus"):
        capsys.readouterr()
        assert data_main(["--dataset", dataset, "--root", str(root), "--mode", mode]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert {s: summary["splits"][s]["per_class"] for s in want} == want
        assert summary["votes"] == FOLDER_VOTES


def test_microsoft_folders_with_the_2017_votes(tmp_path):
    root = _ms_tree(tmp_path / "ms")
    rows = []  # a fer2013new.csv subset: the folders' votes, but every test face surprise
    for split, folder in MS_FOLDERS.items():
        for row in csv.reader(open(root / folder / "label.csv")):
            votes = [0, 0, 10, 0, 0, 0, 0, 0, 0, 0] if split == "test" else row[2:]
            rows.append((split, row[0], votes))
    rows.sort(key=lambda r: r[1])
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
        for split, name, votes in rows:
            w.writerow([usage[split], name, *votes])
    cfg = make_config(
        {"data": {"dataset": "ferplus_folders", "root": str(root), "label_file": "fer2013new.csv"}},
        "test",
    )
    data = load_data(cfg.data, sr=False)
    assert data.summary()["votes"] == NEW_VOTES
    assert data.test.per_class() == [0, 0, 298, 0, 0, 0, 0, 0]
    assert data.train.per_class() == _expected_counts(root, "majority")["train"]


def test_microsoft_folders_refusals_name_folder_file_line(tmp_path):
    root = _ms_tree(tmp_path / "ms")
    (root / "FER2013Valid" / "fer0028638.png").unlink()
    with pytest.raises(
        DataFormatError,
        match=r"FER2013Valid/label\.csv: line 1: image .*fer0028638\.png is missing",
    ):
        read_ferplus_folders(root)
    shutil.rmtree(root)
    root = _ms_tree(tmp_path / "ms")
    with open(root / "FER2013Test" / "label.csv", "a") as f:
        f.write('fer0035801.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(
        DataFormatError, match=r"FER2013Test/label\.csv: line 299: 5 fields, expected 12"
    ):
        read_ferplus_folders(root)
    shutil.rmtree(root)
    root = _ms_tree(tmp_path / "ms")
    # a PublicTest face filed under FER2013Test: its name says val
    line = (root / "FER2013Valid" / "label.csv").read_text().splitlines()[0]
    name = line.split(",")[0]
    shutil.copy(root / "FER2013Valid" / name, root / "FER2013Test" / name)
    with open(root / "FER2013Test" / "label.csv", "a") as f:
        f.write(line + "\n")
    with pytest.raises(
        DataFormatError,
        match=rf"FER2013Test/label\.csv: line 299: {name} is PublicTest in FER2013, its folder says PrivateTest",
    ):
        read_ferplus_folders(root)
    shutil.rmtree(root)
    root = _ms_tree(tmp_path / "ms")
    # a row given twice: the face would count twice (it was read as n=17 for 16 faces)
    rows = (root / "FER2013Train" / "label.csv").read_text().splitlines()
    with open(root / "FER2013Train" / "label.csv", "a") as f:
        f.write(rows[3] + "\n")
    name = rows[3].split(",")[0]
    with pytest.raises(
        DataFormatError,
        match=rf"FER2013Train/label\.csv: line {len(rows) + 1}: image '{name}' is listed twice "
        rf"\(lines 4 and {len(rows) + 1}\)",
    ):
        read_ferplus_folders(root)
    shutil.rmtree(root / "FER2013Valid")
    with pytest.raises(DataFormatError, match=r"needs the folders .*; missing: FER2013Valid/"):
        read_ferplus_folders(root)
