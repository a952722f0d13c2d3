"""Reader for the paper's layout: image folders plus one label CSV.

    root/train/*.png, root/valid/*.png (or val/), root/test/*.png, and a CSV with columns
    Usage, Image Name, 0, 1, ..., 7, UNK, NF, emotion

Images may be any size (e.g. x4 super-resolved FER+ faces, 192 px) but all the same size.
The ten value columns are either crowd votes (counts, as in Microsoft's fer2013new.csv: the
FERPlus label rules apply) or labels: one-hot or normalised rows, as in the paper's own
`fer2013new_jin2.csv`, where `emotion` is the label. A file is one or the other (decided
from all its rows); a row with no values falls back to its `emotion` column.

Which split an image belongs to: a FER+ name (`fer%07d.png`) says it, FER2013's split for
that face (`nrfer.data.splits`: val = PublicTest, test = PrivateTest). The paper's file names
its splits the other way round (its `PublicTest` rows are FER2013's PrivateTest): with
train/ and test/ only, its Usage column is read as that exact swap, with one line saying so;
with train/, valid/ (or val/) and test/ the folders agree with FER2013. Names that are not
FER+ names: the folders say (all three present), else the Usage column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from nrfer.data.ferplus import USAGE_TO_SPLIT
from nrfer.data.labels import ferplus_prior, process_votes
from nrfer.data.splits import resolve_splits
from nrfer.data.types import (
    EMOTIONS,
    NUM_CLASSES,
    DataFormatError,
    FERData,
    FERSplit,
    csv_rows,
    image_to_uint8,
    refuse_repeat,
    split_mode,
)

LABEL_HEADER = (
    "Usage",
    "Image Name",
    *[str(i) for i in range(NUM_CLASSES)],
    "UNK",
    "NF",
    "emotion",
)
FOLDER_SPLITS = {"train": "train", "val": "val", "valid": "val", "test": "test"}
IMAGE_DIRS = tuple(FOLDER_SPLITS)


def find_label_file(root: Path, label_file: str | None) -> Path:
    if label_file:
        path = Path(label_file) if Path(label_file).is_absolute() else root / label_file
        if not path.is_file():
            raise DataFormatError(f"label file {path} does not exist")
        return path
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) != 1:
        raise DataFormatError(
            f"{root}: expected exactly one label CSV ({', '.join(LABEL_HEADER)}), found "
            f"{[c.name for c in csvs] or 'none'}; name it with data.label_file"
        )
    return csvs[0]


def _load_image(path: Path, label_path: Path, line: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            arr = image_to_uint8(im)  # 16-bit scaled as nrfer.predict does, not clipped
    except Image.DecompressionBombError as e:
        raise DataFormatError(
            f"{label_path}: line {line}: image {path} refused, too many pixels for a face ({e})"
        ) from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(
            f"{label_path}: line {line}: image {path} cannot be decoded: {e}"
        ) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def is_label_table(values: np.ndarray) -> bool:
    """True when the value columns are labels (each non-empty row one-hot or normalised,
    values in [0, 1]), False when they are vote counts."""
    filled = values[values.sum(axis=1) > 0]
    return bool(
        len(filled)
        and (filled >= 0).all()
        and (filled <= 1).all()
        and np.allclose(filled.sum(axis=1), 1.0, atol=1e-3)
    )


def label_target(values: np.ndarray, mode: str) -> np.ndarray | None:
    """A label row (one-hot or a distribution over the 8 emotions + UNK + NF) -> the target;
    None when unknown or not-a-face holds the most mass."""
    if int(np.argmax(values)) >= NUM_CLASSES:
        return None
    dist = values[:NUM_CLASSES].astype(np.float32)
    if mode == "majority":
        return np.eye(NUM_CLASSES, dtype=np.float32)[int(np.argmax(dist))]
    return dist / dist.sum()


def read_folders(
    root: str | Path, mode: str = "majority", label_file: str | None = None
) -> FERData:
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"data root {root} is not a folder")
    label_path = find_label_file(root, label_file)
    folders = [d for d in IMAGE_DIRS if (root / d).is_dir()]
    index = index_images(root, folders)
    by_folder = {"train", "val", "test"} <= {FOLDER_SPLITS[d] for d in folders}
    table = [r for r in _read_table(label_path) if r[4]]  # no name: not a face (FER+)
    labels_not_votes = is_label_table(np.stack([r[2] for r in table])) if table else False
    for line, _, _, _, name in table:
        if name not in index:
            raise DataFormatError(
                f"{label_path}: line {line}: image {name!r} is not in "
                f"{', '.join(f'{d}/' for d in IMAGE_DIRS)} under {root}"
            )
    names = [r[4] for r in table]
    claimed = [FOLDER_SPLITS[index[r[4]]] if by_folder else USAGE_TO_SPLIT[r[1]] for r in table]
    split_of, note = resolve_splits(
        names,
        claimed,
        str(label_path) if not by_folder else f"{root} (folders)",
        [f"line {r[0]}" for r in table],
        says="the folder" if by_folder else "Usage",
    )
    rows: dict[str, list] = {s: [] for s in USAGE_TO_SPLIT.values()}
    dropped: dict[str, int] = {s: 0 for s in USAGE_TO_SPLIT.values()}
    for (line, _, values, emotion, name), split in zip(table, split_of, strict=True):
        split_label_mode = split_mode(split, mode)
        if values.sum() > 0:
            target = (
                label_target(values, split_label_mode)
                if labels_not_votes
                else process_votes(values, split_label_mode)
            )
        elif 0 <= emotion < NUM_CLASSES:
            target = np.eye(NUM_CLASSES, dtype=np.float32)[emotion]
        else:
            raise DataFormatError(
                f"{label_path}: line {line}: no votes and emotion {emotion} is not in 0..{NUM_CLASSES - 1}"
            )
        if target is None:
            dropped[split] += 1
            continue
        image = _load_image(root / index[name] / name, label_path, line)
        votes = None if labels_not_votes else values
        rows[split].append((image, target, votes, line))
    splits = {s: _stack(r, label_path) for s, r in rows.items()}
    check_splits(splits, dropped, label_path, root, folders, by_folder)
    meta: dict[str, Any] = {
        "source_files": [str(label_path.resolve())],
        "value_columns": "votes",
    }
    if note:
        meta["notes"] = [note]
    if labels_not_votes:  # no votes to estimate the PDLS prior from: the FER+ vote prior
        meta.update(value_columns="labels", prior=ferplus_prior(EMOTIONS), prior_name="ferplus")
    return FERData.of(splits, label_mode=mode, source=f"folders:{root}", meta=meta)


def index_images(root: Path, folders: list[str]) -> dict[str, str]:
    """Image name -> the folder it is in; a name in two folders is an error (which split
    would it be?)."""
    index: dict[str, str] = {}
    for d in folders:
        for p in sorted((root / d).iterdir()):
            if p.name in index:
                raise DataFormatError(
                    f"{root}: image {p.name!r} is in both {index[p.name]}/ and {d}/; a face "
                    "belongs to one split: remove one copy"
                )
            index[p.name] = d
    return index


def _read_table(label_path: Path) -> list[tuple]:
    """-> (line, usage, 10 values, emotion, image name) per row, checked."""
    out = []
    rows = csv_rows(label_path)
    header = tuple(h.strip() for h in next(rows, (1, []))[1])
    if header != LABEL_HEADER:
        raise DataFormatError(
            f"{label_path}: line 1: columns {list(header)} do not match {list(LABEL_HEADER)}"
        )
    seen: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(LABEL_HEADER):
            raise DataFormatError(
                f"{label_path}: line {line}: {len(row)} fields, expected {len(LABEL_HEADER)}"
            )
        usage, name = row[0].strip(), row[1].strip()
        refuse_repeat(seen, name, line, label_path)
        if usage not in USAGE_TO_SPLIT:
            raise DataFormatError(
                f"{label_path}: line {line}: Usage {usage!r} is not one of {', '.join(USAGE_TO_SPLIT)}"
            )
        try:
            values = np.array([float(x) for x in row[2:12]], dtype=np.float32)
            emotion = int(float(row[12]))
        except ValueError:
            raise DataFormatError(
                f"{label_path}: line {line}: votes and emotion must be numbers"
            ) from None
        if not np.isfinite(values).all() or (values < 0).any():
            raise DataFormatError(
                f"{label_path}: line {line}: values {row[2:12]} must be finite and >= 0"
            )
        out.append((line, usage, values, emotion, name))
    return out


def check_splits(
    splits: dict[str, FERSplit],
    dropped: dict[str, int],
    label_path: Path,
    root: Path,
    folders: list[str],
    by_folder: bool,
) -> None:
    """An empty split, or a train split missing a class, is an error that says why."""
    how = (
        f"by folder ({', '.join(f'{d}/' for d in folders)})"
        if by_folder
        else "by the Usage column (Training: train, PublicTest: val, PrivateTest: test)"
    )
    for name, split in splits.items():
        if len(split) == 0:
            reason = (
                f"all {dropped[name]} of its rows were dropped by the label rules (unknown, "
                "not a face or no majority)"
                if dropped[name]
                else "no row of the label file has an image there"
            )
            raise DataFormatError(
                f"{label_path}: the {name} split is empty: {reason}; splits are assigned {how} under {root}"
            )
    missing = [EMOTIONS[k] for k, n in enumerate(splits["train"].per_class()) if n == 0]
    if missing:
        raise DataFormatError(
            f"{label_path}: the train split has no image of {', '.join(missing)}; "
            "every class needs training images"
        )


def _stack(rows: list, label_path: Path) -> FERSplit:
    if not rows:
        return FERSplit(
            np.zeros((0, 1, 48, 48), np.uint8),
            np.zeros(0, np.int64),
            np.zeros((0, NUM_CLASSES), np.float32),
            np.zeros((0, 10), np.float32),
        )
    shape = rows[0][0].shape
    channels = max(r[0].shape[0] for r in rows)
    for image, _, _, line in rows:
        if image.shape[1:] != shape[1:]:
            raise DataFormatError(
                f"{label_path}: line {line}: image is {image.shape[1:]}, others are {shape[1:]}; all images must have one size"
            )
    images = np.stack([np.broadcast_to(r[0], (channels, *shape[1:])) for r in rows]).astype(
        np.uint8
    )
    targets = np.stack([r[1] for r in rows])
    votes = None if rows[0][2] is None else np.stack([r[2] for r in rows])
    return FERSplit(images, targets.argmax(1).astype(np.int64), targets, votes)
