"""Reader for Microsoft FERPlus: Kaggle's `fer2013.csv` joined row by row with `fer2013new.csv`.

    python -m nrfer.data --dataset ferplus --root DIR --mode majority --summary

`fer2013.csv` has `emotion,pixels,Usage` (pixels: 2304 space-separated ints, 48x48 gray);
`fer2013new.csv` has `Usage,Image name,<8 emotions>,unknown,NF` (10 votes per row), in the
same row order. Splits: Training -> train, PublicTest -> val, PrivateTest -> test, by each
face's FER2013 row (its Image name; `nrfer.data.splits`), which the Usage columns must agree
with (or be its exact val/test swap, read as FER2013's splits with a note).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from nrfer.data.ferplus_names import ROWS as MICROSOFT_ROWS
from nrfer.data.ferplus_names import expected_name
from nrfer.data.labels import LABEL_MODES, process_vote_table
from nrfer.data.splits import resolve_splits
from nrfer.data.types import (
    VOTE_COLUMNS,
    DataFormatError,
    FERData,
    FERSplit,
    csv_rows,
    split_mode,
)

PIXELS_CSV = "fer2013.csv"
VOTES_CSV = "fer2013new.csv"
FER_SIZE = 48
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
PIXELS_HEADER = ("emotion", "pixels", "Usage")
VOTES_HEADER = ("Usage", "Image name", *VOTE_COLUMNS)
FER_NAME = re.compile(r"fer\d{7}\.png")


def find_ferplus_files(root: str | Path) -> tuple[Path, Path]:
    """Locate both CSVs under `root` (also in Kaggle's `fer2013/` subfolder)."""
    root = Path(root)
    found = []
    for name in (PIXELS_CSV, VOTES_CSV):
        candidates = [root / name, root / "fer2013" / name]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataFormatError(
                f"FERPlus file {name!r} not found in {root} (looked at "
                f"{', '.join(str(c) for c in candidates)}); put Kaggle's {PIXELS_CSV} and "
                f"Microsoft's {VOTES_CSV} in that folder"
            )
        found.append(path)
    return found[0], found[1]


def _check_header(path: Path, header: list[str], expected: tuple[str, ...]) -> None:
    got = tuple(h.strip() for h in header)
    if got != expected:
        raise DataFormatError(
            f"{path}: line 1: columns {list(got)} do not match the expected {list(expected)}"
        )


def parse_pixels(text: str, path: Path, line: int) -> np.ndarray:
    n = FER_SIZE * FER_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fromstring stops at a bad token
        try:
            arr = np.fromstring(text, dtype=np.int64, sep=" ")
        except ValueError:  # numpy >= 2.3 raises on a bad token
            arr = np.zeros(0, np.int64)
    if arr.size != n:  # slow path, only to say precisely what is wrong
        tokens = text.split()
        bad = next((t for t in tokens if not t.lstrip("-").isdigit()), None)
        if bad is not None:
            raise DataFormatError(
                f"{path}: line {line}: pixels must be integers, found {bad[:20]!r}"
            )
        raise DataFormatError(
            f"{path}: line {line}: pixels has {len(tokens)} values, expected {n} (48x48)"
        )
    if arr.min() < 0 or arr.max() > 255:
        raise DataFormatError(
            f"{path}: line {line}: pixel values must be in 0..255, found {int(arr.min())}..{int(arr.max())}"
        )
    return arr.astype(np.uint8).reshape(FER_SIZE, FER_SIZE)


def read_votes_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """-> (usages, image names, votes [N, 10])."""
    usages, names, votes = [], [], []
    rows = csv_rows(path)
    _check_header(path, next(rows, (1, []))[1], VOTES_HEADER)
    for line, row in rows:
        if len(row) != len(VOTES_HEADER):
            raise DataFormatError(
                f"{path}: line {line}: {len(row)} fields, expected {len(VOTES_HEADER)}"
            )
        try:
            v = [float(x) for x in row[2:]]
        except ValueError:
            raise DataFormatError(
                f"{path}: line {line}: vote counts must be numbers, got {row[2:]}"
            ) from None
        if not all(math.isfinite(x) and x >= 0 for x in v):
            raise DataFormatError(
                f"{path}: line {line}: vote counts must be finite and >= 0, got {row[2:]}"
            )
        usages.append(row[0].strip())
        names.append(row[1].strip())
        votes.append(v)
    check_names(path, names)
    return usages, names, np.asarray(votes, dtype=np.float32).reshape(-1, len(VOTE_COLUMNS))


def check_names(path: Path, names: list[str]) -> None:
    """Votes are joined to faces by row; the `Image name` column says which face a vote row
    was made for. Microsoft's full file: every name where Microsoft put it. Another length
    (a subset, generated data): names must still rise row by row (a moved block breaks that)."""
    if len(names) == MICROSOFT_ROWS:
        for i, name in enumerate(names):
            if name != expected_name(i):
                raise DataFormatError(
                    f"{path}: line {i + 2}: Image name {name!r}, but Microsoft's file has "
                    f"{expected_name(i)!r} on this row: the vote rows are shifted against "
                    f"the face rows of {PIXELS_CSV} (from here on, faces get other faces' votes)"
                )
        return
    last, last_line = -1, 0
    for i, name in enumerate(names):
        if not name:
            continue
        number = int(name[3:10]) if FER_NAME.fullmatch(name) else None
        if number is None:
            raise DataFormatError(
                f"{path}: line {i + 2}: Image name {name!r} is not fer<7 digits>.png or blank"
            )
        if number <= last:
            raise DataFormatError(
                f"{path}: line {i + 2}: Image name {name!r} does not come after line "
                f"{last_line}'s fer{last:07d}.png: vote rows are out of order or shifted "
                f"against the face rows of {PIXELS_CSV}"
            )
        last, last_line = number, i + 2


def read_pixels_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """-> (usages, images uint8 [N, 48, 48])."""
    usages, images = [], []
    rows = csv_rows(path)
    _check_header(path, next(rows, (1, []))[1], PIXELS_HEADER)
    for line, row in rows:
        if len(row) != 3:
            raise DataFormatError(
                f"{path}: line {line}: {len(row)} fields, expected 3 (emotion,pixels,Usage)"
            )
        images.append(parse_pixels(row[1], path, line))
        usages.append(row[2].strip())
    stacked = np.stack(images) if images else np.zeros((0, FER_SIZE, FER_SIZE), np.uint8)
    return usages, stacked


def build_splits(
    images: np.ndarray,
    usages: list[str],
    votes: np.ndarray,
    mode: str,
    where: Path,
    names: list[str] | None = None,
) -> tuple[dict[str, FERSplit], str | None]:
    """Apply the FERPlus label rules and split: FER2013's split for each FER+ name, else
    Usage (`nrfer.data.splits.resolve_splits`). images: uint8 [N, C, H, W]. Train uses
    `mode`; val and test always use majority (as Microsoft's own training code does), so
    their faces and accuracies do not change with the training label mode.
    -> (splits, a note when the file's Usage is FER2013's val/test swap)."""
    for line, usage in enumerate(usages, start=2):
        if usage not in USAGE_TO_SPLIT:
            raise DataFormatError(
                f"{where}: line {line}: Usage {usage!r} is not one of {', '.join(USAGE_TO_SPLIT)}"
            )
    claimed = [USAGE_TO_SPLIT[u] for u in usages]
    resolved, note = resolve_splits(
        names or [""] * len(usages),
        claimed,
        str(where),
        [f"line {i}" for i in range(2, len(usages) + 2)],
    )
    split_of = np.array(resolved)
    out = {}
    for split in USAGE_TO_SPLIT.values():
        rows = np.flatnonzero(split_of == split)
        kept, targets = process_vote_table(votes[rows], split_mode(split, mode))
        rows = rows[kept]
        out[split] = FERSplit(
            images=np.ascontiguousarray(images[rows]),
            labels=targets.argmax(axis=1).astype(np.int64),
            targets=targets,
            votes=votes[rows],
        )
    return out, note


def read_ferplus(root: str | Path, mode: str = "majority") -> FERData:
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode {mode!r} is not one of {', '.join(LABEL_MODES)}")
    pixels_path, votes_path = find_ferplus_files(root)
    v_usage, names, votes = read_votes_csv(votes_path)
    p_usage, images = read_pixels_csv(pixels_path)
    if len(p_usage) != len(v_usage):
        raise DataFormatError(
            f"{pixels_path} has {len(p_usage)} rows but {votes_path} has {len(v_usage)}; "
            "the two files must list the same images in the same order"
        )
    for line, (a, b) in enumerate(zip(p_usage, v_usage, strict=True), start=2):
        if a != b:
            raise DataFormatError(
                f"line {line}: Usage {a!r} in {pixels_path} but {b!r} in {votes_path}; "
                "the rows of the two files are not aligned"
            )
    splits, note = build_splits(images[:, None], v_usage, votes, mode, votes_path, names)
    meta: dict[str, Any] = {"source_files": [str(pixels_path.resolve()), str(votes_path.resolve())]}
    if note:
        meta["notes"] = [note]
    return FERData.of(splits, label_mode=mode, source=f"ferplus:{Path(root)}", meta=meta)


if __name__ == "__main__":  # an old entry point: say where the command went
    import sys

    print(
        "error: nrfer.data.ferplus is the FER+ reader, not a command; a dataset's summary is "
        "`nrfer data --dataset ferplus --root PATH --summary` (or python -m nrfer.data ...)",
        file=sys.stderr,
    )
    raise SystemExit(2)
