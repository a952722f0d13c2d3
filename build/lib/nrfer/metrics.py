"""Classification metrics from a confusion matrix: accuracy, macro-F1, mean class accuracy,
per-class recall.

Computed from counts over the whole split (sample-weighted), never as a mean of batch means.
"""

from __future__ import annotations

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
