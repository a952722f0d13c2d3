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
EVAL_MODE = "majority"  # validation and test, whatever the training mode
_UNKNOWN = VOTE_COLUMNS.index("unknown")


def split_mode(split: str, mode: str) -> str:
    """The label mode a split is read in: the training mode for train, majority otherwise
    (Microsoft's FERPlus code does the same), so evaluation sets do not move with `mode`."""
    return mode if split == "train" else EVAL_MODE


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
    nrfer.data.synthetic.VOTE_PRIOR) restricted to `class_names`, rows renormalised: the PDLS
    prior of data without votes."""
    from nrfer.data.synthetic import VOTE_PRIOR

    idx = [EMOTIONS.index(c) for c in class_names]
    sub = VOTE_PRIOR[np.ix_(idx, idx)]
    return (sub / sub.sum(axis=1, keepdims=True)).astype(np.float32)
