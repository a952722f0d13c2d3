"""Classification metrics from a confusion matrix (accuracy, macro-F1, mean class accuracy,
per-class recall) and calibration from the probabilities (ECE, NLL, distance to the votes).

Computed from counts over the whole split (sample-weighted), never as a mean of batch means.
"""

from __future__ import annotations

import numpy as np
import torch


def confusion_update(conf: torch.Tensor, preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """conf[true, pred] += 1 for each pair; stays on the device (no host sync)."""
    k = conf.shape[0]
    conf += torch.bincount(labels * k + preds, minlength=k * k).view(k, k).to(conf.dtype)
    return conf


def summarize(conf: torch.Tensor) -> dict:
    conf = conf.double().cpu()
    tp = conf.diag()
    support, predicted = conf.sum(1), conf.sum(0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(
        precision + recall > 0,
        2 * precision * recall / (precision + recall).clamp(min=1e-12),
        torch.zeros_like(tp),
    )
    present = support > 0
    total = conf.sum()
    return {
        "acc": float(tp.sum() / total) if total > 0 else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        # the mean of per-class recall over the classes present (a.k.a. balanced accuracy)
        "mean_class_acc": float(recall[present].mean()) if present.any() else 0.0,
        "per_class_recall": recall.tolist(),
        "confusion": conf.long().tolist(),
        "n": int(total),
    }


# --- calibration: do the probabilities mean what they say? ----------------------------------

ECE_BINS = 15  # Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017)
_EPS = 1e-12  # a probability of exactly 0 for the true class would make NLL infinite


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS):
    """ECE: faces binned by confidence (the top probability) into `bins` equal-width bins
    (0, 1/bins], ...; the face-weighted mean of |accuracy - mean confidence| per bin."""
    if len(labels) == 0:
        return 0.0
    conf = probs.max(1).astype(np.float64)
    right = (probs.argmax(1) == labels).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(right[sel].mean() - conf[sel].mean())
    return float(total / len(labels))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin: its range, face count, mean confidence and accuracy (a
    reliability diagram's bars; None where the bin is empty)."""
    conf = probs.max(1).astype(np.float64)
    right = probs.argmax(1) == labels
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "n": int(sel.sum()),
                "confidence": float(conf[sel].mean()) if sel.any() else None,
                "accuracy": float(right[sel].mean()) if sel.any() else None,
            }
        )
    return out


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class) in nats (p clamped at 1e-12)."""
    if len(labels) == 0:
        return 0.0
    p = probs[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.log(np.clip(p, _EPS, 1.0)).mean())


def vote_total_variation(probs: np.ndarray, votes: np.ndarray) -> float | None:
    """Mean total-variation distance 0.5 * sum |p - v| between each face's predicted
    distribution and its annotators' vote distribution over the model's K classes (the
    first K vote columns; faces without a vote for any of them are left out); None when no
    face has one."""
    k = probs.shape[1]
    v = votes[:, :k].astype(np.float64)
    total = v.sum(1)
    keep = total > 0
    if not keep.any():
        return None
    v = v[keep] / total[keep, None]
    return float(0.5 * np.abs(probs[keep].astype(np.float64) - v).sum(1).mean())


def calibration(probs: np.ndarray, labels: np.ndarray, votes: np.ndarray | None = None) -> dict:
    """ECE (15 bins), NLL and, where the split has annotator votes, the mean total-variation
    distance to the vote distribution (`vote_tv`)."""
    out = {
        "ece": expected_calibration_error(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
    }
    tv = vote_total_variation(probs, votes) if votes is not None and len(votes) else None
    if tv is not None:
        out["vote_tv"] = tv
    return out
