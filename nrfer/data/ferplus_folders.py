"""Reader for Microsoft's FERPlus folders: what its `generate_training_data.py` writes.

    root/FER2013Train/  fer0000000.png ... + label.csv
    root/FER2013Valid/  (FER2013's PublicTest faces: our val)
    root/FER2013Test/   (PrivateTest: our test)

Each `label.csv` has no header; a row is `fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0`:
image name, face box (left, top, width, height), 10 vote counts (8 emotions, unknown, NF).
Those are the votes of the FERPlus repository's folders (2016). Microsoft's `fer2013new.csv`
is the later revision (2017): 1,602 of the 35,710 faces have other votes. `votes_file`
(`data.label_file`) pairs a tree with that file: votes by image name, faces from the folders.

The FERPlus rules and label modes apply as for `dataset: ferplus` (train in the chosen mode,
val and test in majority mode); every face's split is FER2013's for its name, which each
folder must agree with (`nrfer.data.splits`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from nrfer.data.ferplus import read_votes_csv
from nrfer.data.folders import _load_image, check_splits
from nrfer.data.labels import LABEL_MODES, process_vote_table
from nrfer.data.splits import resolve_splits
from nrfer.data.types import (
    SPLITS,
    VOTE_COLUMNS,
    DataFormatError,
    FERData,
    FERSplit,
    csv_rows,
    refuse_repeat,
    split_mode,
)

MS_FOLDERS = {"train": "FER2013Train", "val": "FER2013Valid", "test": "FER2013Test"}
LABEL_CSV = "label.csv"
FOLDER_VOTES = "label.csv: the FERPlus repository's folder votes (2016)"
NEW_VOTES = "fer2013new.csv: Microsoft's 2017 votes, by image name"
_NAME = re.compile(r"[^/\\]+\.png")
_BOX = re.compile(r"\(\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


def is_ferplus_tree(root: str | Path) -> bool:
    """True when `root` holds one of Microsoft's FER2013* folders."""
    return any((Path(root) / d).is_dir() for d in MS_FOLDERS.values())


def read_label_csv(path: Path) -> list[tuple[int, str, tuple[int, ...], np.ndarray]]:
    """-> (line, image name, face box, 10 votes) per row of one folder's label.csv."""
    out: list[tuple[int, str, tuple[int, ...], np.ndarray]] = []
    seen: dict[str, int] = {}
    for line, row in csv_rows(path):
        if not row:
            continue
        if len(row) != 2 + len(VOTE_COLUMNS):
            raise DataFormatError(
                f"{path}: line {line}: {len(row)} fields, expected {2 + len(VOTE_COLUMNS)} "
                '(image name, "(left, top, width, height)", 10 vote counts; no header)'
            )
        name, box = row[0].strip(), _BOX.fullmatch(row[1].strip())
        if not _NAME.fullmatch(name):
            raise DataFormatError(f"{path}: line {line}: image name {name[:40]!r} is not a .png")
        refuse_repeat(seen, name, line, path)
        if box is None:
            raise DataFormatError(
                f"{path}: line {line}: face box {row[1][:40]!r} is not (left, top, width, height)"
            )
        try:
            votes = np.array([float(x) for x in row[2:]], dtype=np.float32)
        except ValueError:
            raise DataFormatError(
                f"{path}: line {line}: vote counts must be numbers, got {row[2:]}"
            ) from None
        if not np.isfinite(votes).all() or (votes < 0).any():
            raise DataFormatError(
                f"{path}: line {line}: vote counts must be finite and >= 0, got {row[2:]}"
            )
        out.append((line, name, tuple(int(g) for g in box.groups()), votes))
    return out


def _votes_by_name(path: Path) -> dict[str, np.ndarray]:
    """fer2013new.csv -> name -> votes. Microsoft named four faces twice (same split); its
    generate_training_data.py writes rows in order, so the face on disk is the later row's."""
    _, names, votes = read_votes_csv(path)
    return {n: v for n, v in zip(names, votes, strict=True) if n}


def read_ferplus_folders(
    root: str | Path, mode: str = "majority", votes_file: str | None = None
) -> FERData:
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode {mode!r} is not one of {', '.join(LABEL_MODES)}")
    root = Path(root)
    missing = [d for d in MS_FOLDERS.values() if not (root / d).is_dir()]
    if missing:
        raise DataFormatError(
            f"{root}: Microsoft's FERPlus layout needs the folders "
            f"{', '.join(f'{d}/' for d in MS_FOLDERS.values())}; missing: "
            f"{', '.join(f'{d}/' for d in missing)}"
        )
    new_votes, vpath = None, None
    if votes_file:
        vpath = Path(votes_file) if Path(votes_file).is_absolute() else root / votes_file
        if not vpath.is_file():
            raise DataFormatError(f"votes file {vpath} (data.label_file) does not exist")
        new_votes = _votes_by_name(vpath)
    table = []  # (label.csv, line, folder, name, votes)
    for split, folder in MS_FOLDERS.items():
        path = root / folder / LABEL_CSV
        if not path.is_file():
            raise DataFormatError(
                f"{path} does not exist: each FER2013* folder holds its faces and a label.csv"
            )
        for line, name, _, votes in read_label_csv(path):
            if not (root / folder / name).is_file():
                raise DataFormatError(
                    f"{path}: line {line}: image {root / folder / name} is missing"
                )
            if new_votes is not None:
                if name not in new_votes:
                    raise DataFormatError(
                        f"{path}: line {line}: image {name!r} has no row in {votes_file}"
                    )
                votes = new_votes[name]
            table.append((path, line, split, name, votes))
    if not table:
        raise DataFormatError(f"{root}: the three label.csv files have no rows")
    split_of, note = resolve_splits(
        [t[3] for t in table],
        [t[2] for t in table],
        str(root),
        [f"{t[0].parent.name}/{LABEL_CSV}: line {t[1]}" for t in table],
        says="its folder",
    )
    splits, dropped = {}, {}
    for split in SPLITS:
        rows = [t for t, s in zip(table, split_of, strict=True) if s == split]
        votes = np.stack([t[4] for t in rows]) if rows else np.zeros((0, 10), np.float32)
        kept, targets = process_vote_table(votes, split_mode(split, mode))
        dropped[split] = len(rows) - len(kept)
        images = [_load_image(rows[k][0].parent / rows[k][3], rows[k][0], rows[k][1]) for k in kept]
        splits[split] = _split(images, targets, votes[kept], [rows[k] for k in kept])
    check_splits(splits, dropped, root / LABEL_CSV, root, list(MS_FOLDERS.values()), True)
    meta: dict[str, Any] = {
        "source_files": [str((root / d / LABEL_CSV).resolve()) for d in MS_FOLDERS.values()],
        "votes": NEW_VOTES if new_votes is not None else FOLDER_VOTES,
        "value_columns": "votes",
    }
    if vpath is not None:
        meta["source_files"].append(str(vpath.resolve()))
    if note:
        meta["notes"] = [note]
    return FERData.of(splits, label_mode=mode, source=f"ferplus_folders:{root}", meta=meta)


def _split(images: list, targets: np.ndarray, votes: np.ndarray, rows: list) -> FERSplit:
    if not images:
        return FERSplit(
            np.zeros((0, 1, 48, 48), np.uint8),
            np.zeros(0, np.int64),
            np.zeros((0, targets.shape[1]), np.float32),
            np.zeros((0, 10), np.float32),
        )
    for image, row in zip(images, rows, strict=True):
        if image.shape != images[0].shape:
            raise DataFormatError(
                f"{row[0]}: line {row[1]}: image {row[3]} is {image.shape[1:]} with "
                f"{image.shape[0]} channel(s), the first is {images[0].shape[1:]} with "
                f"{images[0].shape[0]}: all faces must have one size and kind"
            )
    return FERSplit(
        np.ascontiguousarray(np.stack(images)),
        targets.argmax(axis=1).astype(np.int64),
        targets,
        votes,
    )
