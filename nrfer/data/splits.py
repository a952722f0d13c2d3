"""FER2013's own splits, by face: a FER+ face's split is a fact about the face, not about
the file that lists it.

FER2013 has 35,887 rows in a fixed order: Training (rows 0..28,708), PublicTest (28,709..
32,297), PrivateTest (32,298..35,886). FER+ names each face `fer%07d.png` after its row
(`nrfer.data.ferplus_names`), so a name says the split: val = PublicTest, test = PrivateTest,
whatever a CSV's `Usage` column or a folder says. The paper's released CSV
(`fer2013new_jin2.csv`) names PublicTest and PrivateTest the other way round; read as it
says, epochs and configs would be selected on the real test set.

Every FER+ reader calls `resolve_splits`: names that are Microsoft's get FER2013's split;
a file whose claims are exactly FER2013's, or exactly its val/test swap, is read with
FER2013's splits (the swap with one line saying so); any other mix is an error naming the
first rows that disagree. Names that are not FER+ names keep what the file says.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cache

from nrfer.data.ferplus_names import OFFSETS, ROWS, expected_name
from nrfer.data.types import DataFormatError

TRAIN_ROWS = 28_709
PUBLIC_TEST_ROWS = 3_589
USAGE_OF_SPLIT = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
_SWAP = {"train": "train", "val": "test", "test": "val"}


def split_of_row(row: int) -> str:
    """FER2013 row (0-based) -> train / val (PublicTest) / test (PrivateTest)."""
    if not 0 <= row < ROWS:
        raise ValueError(f"FER2013 row {row} is not in 0..{ROWS - 1}")
    if row < TRAIN_ROWS:
        return "train"
    return "val" if row < TRAIN_ROWS + PUBLIC_TEST_ROWS else "test"


@cache
def _single_rows() -> frozenset[int]:
    """The four rows Microsoft named out of sequence (each name is also on its own row)."""
    starts = [row for row, _ in OFFSETS]
    return frozenset(r for r, nxt in zip(starts, starts[1:], strict=False) if nxt == r + 1)


@cache
def row_of_name() -> dict[str, int]:
    """Microsoft's FER+ image name -> its FER2013 row (blank rows have no name; a name
    Microsoft gave twice maps to the row it is in sequence on, in the same split)."""
    out: dict[str, int] = {}
    for row in (*(r for r in range(ROWS) if r not in _single_rows()), *_single_rows()):
        if (name := expected_name(row)) and name not in out:
            out[name] = row
    return out


def canonical_split(name: str) -> str | None:
    """The FER2013 split of a FER+ image name; None for a name Microsoft never gave."""
    row = row_of_name().get(name)
    return None if row is None else split_of_row(row)


@cache
def names_of_split(split: str) -> tuple[str, ...]:
    """Microsoft's names of one split's faces in row order, rising (the out-of-sequence
    rows left out): what the synthetic generator names its faces."""
    return tuple(
        name
        for row in range(ROWS)
        if row not in _single_rows() and split_of_row(row) == split
        if (name := expected_name(row))
    )


def resolve_splits(
    names: Sequence[str],
    claimed: Sequence[str],
    where: str,
    lines: Sequence[int | str] | None = None,
    says: str = "Usage",
) -> tuple[list[str], str | None]:
    """-> (the split of each row, a note or None). `claimed`: the split each row's file or
    folder gives (train / val / test); `where`: the file (or tree) for messages; `lines`:
    how to name each row in an error (line numbers, or paths); `says`: what made the claim.

    FER2013's split wins for every Microsoft name. When the claims of those rows equal it:
    no note. When they are its exact PublicTest/PrivateTest swap: a note, printed once.
    Anything else: DataFormatError naming the first rows that disagree."""
    lines = list(lines) if lines is not None else [f"row {i + 1}" for i in range(len(names))]
    truth = [canonical_split(n) if n else None for n in names]
    known = [i for i, t in enumerate(truth) if t is not None]
    fact = {i: t for i, t in enumerate(truth) if t is not None}  # the rows FER2013 names
    out = [t if t is not None else c for t, c in zip(truth, claimed, strict=True)]
    if all(claimed[i] == truth[i] for i in known):
        return out, None
    if all(claimed[i] == _SWAP[fact[i]] for i in known):
        note = (
            f"{where}: this file's PublicTest/PrivateTest are swapped relative to FER2013, as "
            "in the paper's released CSV: reading FER2013's own splits (val = PublicTest, "
            "test = PrivateTest, by image name)"
        )
        print(note, file=sys.stderr)
        return out, note
    bad = [i for i in known if claimed[i] != truth[i]]
    shown = "; ".join(
        f"{lines[i]}: {names[i]} is {USAGE_OF_SPLIT[fact[i]]} in FER2013, {says} says "
        f"{USAGE_OF_SPLIT[claimed[i]]}"
        for i in bad[:3]
    )
    raise DataFormatError(
        f"{where}: {len(bad)} of {len(known)} FER+ images are not in FER2013's split for "
        f"their name, and not as an exact PublicTest/PrivateTest swap either ({shown}); a "
        "FER+ face's split is FER2013's (Training / PublicTest = val / PrivateTest = test): "
        "fix the file or the folders"
    )
