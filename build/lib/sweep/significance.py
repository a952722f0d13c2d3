"""Is a study's difference real? Seeds' spread and paired per-image disagreements.

- `welch_interval`: the difference of two cells' mean test accuracies over seeds with a
  95% Welch t-interval (unequal variances, Welch-Satterthwaite degrees of freedom). Seeds
  are few (3 in the paper's grid), so the interval is wide; with fewer than 2 seeds in
  either cell there is no interval.
- `mcnemar_exact`: McNemar's exact test on paired predictions of the same test images:
  b = faces only the cell gets right, c = faces only the baseline gets right; under "no
  difference" b ~ Binomial(b + c, 1/2), and p is the two-sided exact binomial tail.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

CONFIDENCE = 0.95


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def welch_interval(
    a: list[float], b: list[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float] | None:
    """mean(a) - mean(b) and its `confidence` Welch t-interval (lo, hi); None when either
    side has under 2 values. Equal variances of zero give the point as the interval."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import t

    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(t.ppf(0.5 + confidence / 2, dof)) * se
    return diff, diff - half, diff + half


def disagreements(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(b, c): faces only `a` classifies right, faces only `b` classifies right."""
    right_a, right_b = pred_a == labels, pred_b == labels
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of discordant counts b and c (1.0 when b + c = 0)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
