"""In-memory FER data: one uint8 image array per split with labels, soft targets and votes.

Every reader (FERPlus CSVs, the paper's image folders, synthetic FER+) returns `FERData`;
training code never touches files. Images are stored once, as uint8 [N, C, H, W] (C = 1
for grayscale FER+), and turned into float tensors on the training device batch by batch.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrfer.errors import DataFormatError

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
NUM_CLASSES = len(EMOTIONS)
# FER+ vote columns: the 8 emotions, then unknown and NF (not a face).
VOTE_COLUMNS: tuple[str, ...] = (*EMOTIONS, "unknown", "NF")
SPLITS: tuple[str, ...] = ("train", "val", "test")
EVAL_MODE = "majority"  # the label mode of validation and test, whatever the training mode


def split_mode(split: str, mode: str) -> str:
    """The label mode a split is read in: the training mode for train, majority otherwise
    (Microsoft's FERPlus code does the same), so evaluation sets do not move with `mode`."""
    return mode if split == "train" else EVAL_MODE


@dataclass
class FERSplit:
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N], argmax of targets
    targets: np.ndarray  # float32 [N, K], the label distribution of the label mode
    votes: np.ndarray | None = None  # float32 [N, 10] raw annotator votes (FER+ order)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {self.images.shape}"
            )
        for name in ("labels", "targets"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, images {n}")
        if self.votes is not None and len(self.votes) != n:
            raise ValueError(f"votes has {len(self.votes)} rows, images {n}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def per_class(self, num_classes: int = NUM_CLASSES) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).astype(int).tolist()


@dataclass
class FERData:
    train: FERSplit
    val: FERSplit
    test: FERSplit
    class_names: tuple[str, ...] = EMOTIONS
    label_mode: str = "majority"
    source: str = ""
    meta: dict = field(default_factory=dict)

    @classmethod
    def of(cls, splits: dict[str, FERSplit], **rest: Any) -> FERData:
        """From {"train": ..., "val": ..., "test": ...} and the other fields."""
        return cls(train=splits["train"], val=splits["val"], test=splits["test"], **rest)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> FERSplit:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; valid: {', '.join(SPLITS)}")
        return getattr(self, name)

    def summary(self) -> dict:
        """Split sizes and class counts; `mode` is the training label mode, each split says
        the mode it was read in (val and test: majority)."""
        out = {
            "mode": self.label_mode,
            "splits": {
                s: {
                    "n": len(self.split(s)),
                    "per_class": self.split(s).per_class(self.num_classes),
                    "mode": split_mode(s, self.label_mode),
                }
                for s in SPLITS
            },
        }
        for key in ("votes", "notes"):  # which votes a tree holds; split swaps read
            if key in self.meta:
                out[key] = self.meta[key]
        return out


def prior_from_votes(
    votes: np.ndarray, labels: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """PDLS prior D (Hwang et al. 2022, Sec. 2.3): row i = mean vote distribution over the
    `num_classes` emotions of the training images labelled i. Rows with no images (or no
    emotion votes) fall back to one-hot, so the prior never invents confusion."""
    emo = np.asarray(votes, dtype=np.float64)[:, :num_classes]
    totals = emo.sum(axis=1, keepdims=True)
    dist = np.divide(emo, totals, out=np.zeros_like(emo), where=totals > 0)
    prior = np.eye(num_classes)
    for i in range(num_classes):
        rows = dist[(labels == i) & (totals[:, 0] > 0)]
        if len(rows):
            prior[i] = rows.mean(axis=0)
    return (prior / prior.sum(axis=1, keepdims=True)).astype(np.float32)


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each row of a CSV file, read as UTF-8 (a byte-order mark is
    dropped); a file that is not UTF-8 text or not CSV is a DataFormatError naming the line."""
    line = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            for line, row in enumerate(csv.reader(f), start=1):
                yield line, row
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except csv.Error as e:
        raise DataFormatError(f"{path}: line {line + 1}: not a readable CSV row ({e})") from None


def refuse_repeat(seen: dict[str, int], name: str, line: int, path) -> None:
    """A label file lists each image once: a second row for `name` (it would count the
    face twice) is an error naming both lines. `seen` maps names to their first line; rows
    without a name (FER2013's blank, not-a-face rows) are not images."""
    if not name:
        return
    first = seen.setdefault(name, line)
    if first != line:
        raise DataFormatError(
            f"{path}: line {line}: image {name!r} is listed twice (lines {first} and {line}); "
            "a face must have one row: keep one"
        )


def image_to_uint8(im) -> np.ndarray:
    """A decoded PIL image as uint8 (H, W) for grey modes or (H, W, 3): 16-bit (and 32-bit
    integer) images scaled by 1/257 to 0..255, never clipped; the one conversion both the
    readers and `nrfer.predict` use, so training and serving see the same pixels."""
    if im.mode.startswith("I;16") or im.mode == "I":  # 16-bit PNG/TIFF: 0..65535
        wide = np.asarray(im, dtype=np.float64)
        return np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
    if im.mode in ("L", "RGB"):
        return np.asarray(im)
    return np.asarray(im.convert("L") if im.mode in ("1", "P", "LA") else im.convert("RGB"))


def read_text(path: Path) -> str:
    """A text file as UTF-8 (BOM dropped), or a DataFormatError naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def not_utf8(path: Path) -> DataFormatError:
    """The error for a file that is not UTF-8, naming its first bad line and byte (decoding
    reads in blocks, so the line is found again here, on the error path only)."""
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataFormatError(
                    f"{path}: line {line}: not UTF-8 text (byte {raw[e.start]:#04x}); save the "
                    "file as UTF-8"
                )
    return DataFormatError(f"{path}: not UTF-8 text; save the file as UTF-8")
