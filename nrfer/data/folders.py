"""Reader for the paper's layout: image folders plus one label CSV with vote columns.

    root/train/*.png, root/test/*.png (optionally root/val/), and a CSV with columns
    Usage, Image Name, 0, 1, ..., 7, UNK, NF, emotion

Images may be any size (e.g. x4 super-resolved FER+ faces, 192 px) but all the same size.
The vote columns go through the FERPlus label rules like the Microsoft files; a row whose
votes are all zero falls back to its `emotion` column. Usage names the split.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nrfer.data.ferplus import USAGE_TO_SPLIT
from nrfer.data.labels import process_votes
from nrfer.data.types import NUM_CLASSES, DataFormatError, FERData, FERSplit

LABEL_HEADER = (
    "Usage",
    "Image Name",
    *[str(i) for i in range(NUM_CLASSES)],
    "UNK",
    "NF",
    "emotion",
)
IMAGE_DIRS = ("train", "val", "test")


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
            arr = np.asarray(
                im.convert("L")
                if im.mode in ("L", "I", "I;16", "1", "P", "LA")
                else im.convert("RGB")
            )
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(
            f"{label_path}: line {line}: image {path} cannot be decoded: {e}"
        ) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_folders(
    root: str | Path, mode: str = "majority", label_file: str | None = None
) -> FERData:
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"data root {root} is not a folder")
    label_path = find_label_file(root, label_file)
    index = {p.name: p for d in IMAGE_DIRS if (root / d).is_dir() for p in (root / d).iterdir()}
    rows: dict[str, list] = {s: [] for s in USAGE_TO_SPLIT.values()}
    with open(label_path, newline="") as f:
        reader = csv.reader(f)
        header = tuple(h.strip() for h in next(reader, []))
        if header != LABEL_HEADER:
            raise DataFormatError(
                f"{label_path}: line 1: columns {list(header)} do not match {list(LABEL_HEADER)}"
            )
        for line, row in enumerate(reader, start=2):
            if len(row) != len(LABEL_HEADER):
                raise DataFormatError(
                    f"{label_path}: line {line}: {len(row)} fields, expected {len(LABEL_HEADER)}"
                )
            usage, name = row[0].strip(), row[1].strip()
            if usage not in USAGE_TO_SPLIT:
                raise DataFormatError(
                    f"{label_path}: line {line}: Usage {usage!r} is not one of {', '.join(USAGE_TO_SPLIT)}"
                )
            try:
                votes = np.array([float(x) for x in row[2:12]], dtype=np.float32)
                emotion = int(row[12])
            except ValueError:
                raise DataFormatError(
                    f"{label_path}: line {line}: votes and emotion must be numbers"
                ) from None
            if not name:
                continue  # not a face (FER+ rows with no image)
            if votes.sum() > 0:
                target = process_votes(votes, mode)
            elif 0 <= emotion < NUM_CLASSES:
                target = np.eye(NUM_CLASSES, dtype=np.float32)[emotion]
            else:
                raise DataFormatError(
                    f"{label_path}: line {line}: no votes and emotion {emotion} is not in 0..{NUM_CLASSES - 1}"
                )
            if target is None:
                continue
            if name not in index:
                raise DataFormatError(
                    f"{label_path}: line {line}: image {name!r} is not in {', '.join(IMAGE_DIRS)} under {root}"
                )
            image = _load_image(index[name], label_path, line)
            rows[USAGE_TO_SPLIT[usage]].append((image, target, votes, line))
    return FERData(
        **{s: _stack(r, label_path) for s, r in rows.items()},
        label_mode=mode,
        source=f"folders:{root}",
        meta={"source_files": [str(label_path.resolve())]},
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
    return FERSplit(
        images, targets.argmax(1).astype(np.int64), targets, np.stack([r[2] for r in rows])
    )
