"""FERPlus label processing: 10 crowd votes per face -> a label distribution.

Follows Microsoft's FERPlus reference code (`ferplus.py`, `_process_data`; Barsoum et al.
2016): 1-vote outliers dropped; `majority` keeps the top emotion when it holds more than
half of the remaining votes; `crossentropy` / `probability` keep the top emotions (ties
included) until 75% of the votes, at most 3. Images whose result is unknown or NF are dropped.
"""

from __future__ import annotations

import numpy as np

from nrfer.data.types import EMOTIONS, NUM_CLASSES, VOTE_COLUMNS

LABEL_MODES = ("majority", "crossentropy", "probability")
_UNKNOWN = VOTE_COLUMNS.index("unknown")

# Mean vote distribution (8 emotions, unknown, NF) of the real FER+ images whose majority
# label is row i: `prior_from_votes` over all 10 columns of ../shared/data/ferplus/
# fer2013new.csv (35,887 rows, majority mode), estimated once and embedded here;
# tests/nrfer/test_synthetic.py recomputes it from that file when present.
VOTE_PRIOR = np.array(
    [
        [0.7511, 0.0288, 0.0164, 0.0963, 0.0257, 0.0076, 0.0047, 0.0204, 0.0484, 0.0005],
        [0.0395, 0.9130, 0.0204, 0.0044, 0.0040, 0.0022, 0.0017, 0.0034, 0.0112, 0.0003],
        [0.0546, 0.0337, 0.7668, 0.0099, 0.0140, 0.0031, 0.0839, 0.0026, 0.0309, 0.0004],
        [0.1537, 0.0136, 0.0096, 0.7100, 0.0230, 0.0120, 0.0165, 0.0103, 0.0506, 0.0006],
        [0.0676, 0.0260, 0.0579, 0.0311, 0.6987, 0.0341, 0.0249, 0.0098, 0.0492, 0.0006],
        [0.0857, 0.0186, 0.0193, 0.0857, 0.1224, 0.5596, 0.0118, 0.0329, 0.0634, 0.0006],
        [0.0421, 0.0136, 0.1606, 0.0685, 0.0313, 0.0143, 0.6213, 0.0037, 0.0439, 0.0007],
        [0.1297, 0.0182, 0.0101, 0.0486, 0.0378, 0.0649, 0.0068, 0.6196, 0.0642, 0.0000],
    ]
)


def process_votes(votes: np.ndarray, mode: str) -> np.ndarray | None:
    """One row of 10 votes -> the 8-emotion target distribution, or None when dropped."""
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; valid: {', '.join(LABEL_MODES)}")
    raw = np.asarray(votes, dtype=np.float64).copy()
    size = len(raw)
    raw[raw <= 1.0] = 0.0  # single votes are outliers
    total = raw.sum()
    if total <= 0:
        return None
    emotion = np.zeros(size)
    if mode == "majority":
        top = raw.max()
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            return None
    else:
        covered, count, valid = 0.0, 0, True
        while covered < 0.75 * total and count < 3 and valid:
            top = raw.max()
            for i in range(size):
                if raw[i] == top:
                    emotion[i] = top
                    raw[i] = 0.0
                    covered += top
                    count += 1
                    if i >= _UNKNOWN:  # unknown / NF ties with the current top votes
                        valid = False
                        if emotion.sum() > top:  # emotions came before it: keep those
                            emotion[i] = 0.0
                            count -= 1
                        break
        if emotion.sum() <= 0.5 * total or count > 3:
            return None
    if int(np.argmax(emotion)) >= NUM_CLASSES:  # unknown or NF wins
        return None
    emotion = emotion[:NUM_CLASSES]
    return (emotion / emotion.sum()).astype(np.float32)


def process_vote_table(votes: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """All rows -> (kept row indices, targets [kept, 8])."""
    kept, targets = [], []
    for i, row in enumerate(votes):
        t = process_votes(row, mode)
        if t is not None:
            kept.append(i)
            targets.append(t)
    if not kept:
        return np.zeros(0, dtype=np.int64), np.zeros((0, NUM_CLASSES), dtype=np.float32)
    return np.asarray(kept, dtype=np.int64), np.stack(targets)


def ferplus_prior(class_names: tuple[str, ...]) -> np.ndarray:
    """The FER+ vote prior (`loss.prior: ferplus`; computed once from Microsoft's votes, see
    VOTE_PRIOR) restricted to `class_names`, rows renormalised: the PDLS prior of data
    without votes."""
    idx = [EMOTIONS.index(c) for c in class_names]
    sub = VOTE_PRIOR[np.ix_(idx, idx)]
    return (sub / sub.sum(axis=1, keepdims=True)).astype(np.float32)
