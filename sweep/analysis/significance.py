"""Is a study's difference real? Tests that count both sources of noise a FER result has:
which seed trained the model, and which faces happen to be in the test split.

Every comparison pairs a cell with its baseline cell: the same seeds (paired where both
cells ran them) and the same test faces. `right_x[s]` is a bool array over the faces, True
where seed `s`'s model of cell x classified that face right.

- `crossed_interval` (the headline interval and p): over the seeds x faces table of
  per-(seed, face) differences, the spread of the per-seed differences over S seeds plus
  the part of the difference the faces share across seeds (MS_face - MS_residual over
  S K), each with its own t quantile (S - 1 and K - 1 df), summed in quadrature. It
  covers 95% in simulated null studies at 2 to 10 seeds, whether seed or face noise
  dominates and when the cells differ face by face (tests/sweep/test_significance.py);
  a percentile bootstrap over 2-3 seeds and a permutation test holding each face fixed
  did not (they covered 64-91% and 82-89% there).
- `paired_t_interval`: the per-seed differences' mean and t-interval (seeds only: the CSV).
- `mcnemar_exact` per seed (secondary: test-set noise of one trained pair only) and
  `agreement`, which says whether the seeds point the same way.
- `holm`, `benjamini_hochberg`: adjusted p-values over a table's family of comparisons.
- `crossed_power`, `seeds_needed`, `detectable`: the crossed test's power, the seeds it
  needs and what it detects, at whatever level the caller corrects to.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than 2 values: no spread)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


@dataclass(frozen=True)
class Interval:
    """An estimate with its `confidence` interval (lo, hi), in the units given."""

    estimate: float
    low: float
    high: float

    def scaled(self, k: float) -> Interval:
        return Interval(self.estimate * k, self.low * k, self.high * k)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_t_interval(diffs: list[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Mean of per-seed differences and its t-interval (n - 1 degrees of freedom); None
    under 2 seeds. Equal differences give the point as the interval."""
    if len(diffs) < 2:
        return None
    from scipy.stats import t

    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    half = float(t.ppf(0.5 + confidence / 2, len(diffs) - 1)) * se
    return Interval(mean, mean - half, mean + half)


def welch_interval(
    a: list[float], b: list[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float] | None:
    """mean(a) - mean(b) with a Welch t-interval, for two cells that share no seeds (runs
    not paired); None when either side has under 2 values."""
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


@dataclass(frozen=True)
class Crossed:
    """The difference of mean test accuracy (a minus b, fractions) over seeds x faces, with
    its interval and p. `seed_var`: the spread of the per-seed differences over S (it holds
    each seed's own face noise too); `face_var`: the faces' shared part over K, (MS_face -
    MS_residual) / (S K) of the seed x face table, which per-seed tests cannot see (each
    cell better on some faces and worse on others moves every seed the same way)."""

    interval: Interval
    p: float
    seeds: int
    faces: int
    seed_var: float
    face_var: float


def crossed_interval(
    right_a: dict[int, np.ndarray], right_b: dict[int, np.ndarray], confidence: float = CONFIDENCE
) -> Crossed | None:
    """Seeds x faces interval and p of mean(a) - mean(b) over the seeds both cells ran (the
    same test faces). Half-width sqrt(t_{S-1}^2 seed_var + t_{K-1}^2 face_var): each
    variance part with its own degrees of freedom, summed in quadrature (Banerjee's
    solution of Behrens-Fisher, never narrower than either part's own interval); p is the
    1 - confidence at which that interval touches 0, so p < 0.05 exactly when the 95%
    interval excludes 0. None under 2 paired seeds or when the faces differ in number."""
    shared = sorted(set(right_a) & set(right_b))
    if (
        len(shared) < 2
        or len({len(right_a[s]) for s in shared} | {len(right_b[s]) for s in shared}) != 1
    ):
        return None
    d = np.stack([right_a[s].astype(np.float64) - right_b[s] for s in shared])  # [S, K]
    n_seeds, n_faces = d.shape
    per_seed, per_face = d.mean(1), d.mean(0)
    mean = float(per_seed.mean())
    ms_seed = n_faces * float(np.sum((per_seed - mean) ** 2)) / (n_seeds - 1)
    ms_face = n_seeds * float(np.sum((per_face - mean) ** 2)) / max(n_faces - 1, 1)
    residual = d - per_seed[:, None] - per_face[None, :] + mean
    ms_res = float(np.sum(residual**2)) / ((n_seeds - 1) * max(n_faces - 1, 1))
    seed_var = ms_seed / (n_seeds * n_faces)
    face_var = max(ms_face - ms_res, 0.0) / (n_seeds * n_faces)
    dfs = (n_seeds - 1, max(n_faces - 1, 1))
    half = _half_width(seed_var, face_var, dfs, 1 - confidence)
    return Crossed(
        Interval(mean, mean - half, mean + half),
        _crossed_p(abs(mean), seed_var, face_var, dfs),
        n_seeds,
        n_faces,
        seed_var,
        face_var,
    )


def _half_width(seed_var: float, face_var: float, dfs: tuple[int, int], alpha: float) -> float:
    from scipy.stats import t

    q = alpha / 2
    parts = [
        t.isf(q, df) ** 2 * v for v, df in zip((seed_var, face_var), dfs, strict=True) if v > 0
    ]
    return math.sqrt(sum(parts))


def _crossed_p(effect: float, seed_var: float, face_var: float, dfs: tuple[int, int]) -> float:
    """The alpha at which the crossed interval's half-width equals `effect` (a root in log
    alpha: the half-width falls as alpha grows)."""
    if seed_var + face_var == 0:
        return 1.0 if effect == 0 else 0.0
    if effect == 0:
        return 1.0
    from scipy.optimize import brentq

    def gap(log_alpha: float) -> float:
        return _half_width(seed_var, face_var, dfs, math.exp(log_alpha)) - effect

    if gap(-300.0) <= 0:
        return 0.0
    if gap(0.0) >= 0:
        return 1.0
    return min(1.0, math.exp(brentq(gap, -300.0, 0.0, xtol=1e-9)))


def disagreements(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(b, c): faces only `a` classifies right, faces only `b` classifies right."""
    return discordant(pred_a == labels, pred_b == labels)


def discordant(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int]:
    """(b, c) of two models' per-face correctness: right only for `a`, right only for `b`
    (McNemar's discordant pairs)."""
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of discordant counts b and c (1.0 when b + c = 0)."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def agreement(diffs: list[float]) -> str:
    """Whether the seeds' differences point the same way: 'seeds agree 3/3 +' (all in
    favour of the cell), '... -' (all of the baseline), 'seeds disagree (2+ 1-)', or
    'one seed' / 'no difference'."""
    if not diffs:
        return ""
    up, down = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    if len(diffs) == 1:
        return "one seed"
    if up == len(diffs) or down == len(diffs):
        return f"seeds agree {len(diffs)}/{len(diffs)} {'+' if up else '-'}"
    if up == down == 0:
        return "no difference"
    ties = len(diffs) - up - down
    return f"seeds disagree ({up}+ {down}-" + (f" {ties}=)" if ties else ")")


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def benjamini_hochberg(p: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input's order."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i], reverse=True)
    out, running = [0.0] * m, 1.0
    for k, i in enumerate(order):  # from the largest p down: rank m - k
        running = min(running, p[i] * m / (m - k))
        out[i] = min(1.0, running)
    return out


_QUADRATURE = 400  # points of the seed variance's chi-square in `crossed_power`


def crossed_power(
    n: int, delta: float, seed_sd: float, face_var: float = 0.0, alpha: float = 0.05
) -> float:
    """Power of the crossed interval (`crossed_interval`) at two-sided `alpha` over n seeds
    for a true difference `delta`, when per-seed differences have standard deviation
    `seed_sd` and the faces' shared part has variance `face_var` (which more seeds do not
    shrink). The seed variance is estimated on n - 1 df: its chi-square is integrated over
    (mid-quantiles), so with face_var 0 this is the paired t test's noncentral-t power."""
    if n < 2:
        return 0.0
    from scipy.stats import chi2, norm, t

    if seed_sd <= 0 and face_var <= 0:
        return 1.0 if delta else alpha
    u = (np.arange(_QUADRATURE) + 0.5) / _QUADRATURE
    s2 = seed_sd**2 * chi2.ppf(u, n - 1) / (n - 1)
    half = np.sqrt(t.isf(alpha / 2, n - 1) ** 2 * s2 / n + norm.isf(alpha / 2) ** 2 * face_var)
    sd = math.sqrt(seed_sd**2 / n + face_var)
    d = abs(delta)
    return float(np.mean(norm.sf((half - d) / sd) + norm.cdf((-half - d) / sd)))


def seeds_needed(
    delta: float,
    sd: float,
    power: float = 0.8,
    alpha: float = 0.05,
    most: int = 200,
    face_var: float = 0.0,
) -> int | None:
    """The fewest seeds (>= 2) whose crossed comparison detects `delta` with `power`; None
    when more than `most` would be needed (or no number would: the faces' shared part
    alone keeps the power below it)."""
    from scipy.stats import norm

    if face_var > 0:  # infinitely many seeds: only the faces' part is left
        z, sd_f = norm.isf(alpha / 2), math.sqrt(face_var)
        if norm.sf(z - abs(delta) / sd_f) + norm.cdf(-z - abs(delta) / sd_f) < power:
            return None
    for n in range(2, most + 1):
        if crossed_power(n, delta, sd, face_var, alpha) >= power:
            return n
    return None


def detectable(
    n: int, sd: float, power: float = 0.8, alpha: float = 0.05, face_var: float = 0.0
) -> float:
    """The smallest true difference the crossed comparison over n seeds detects with
    `power` (bisection on `crossed_power`; inf under 2 seeds)."""
    if n < 2:
        return math.inf
    lo, hi = 0.0, max(sd, math.sqrt(face_var), 1e-9)
    while crossed_power(n, hi, sd, face_var, alpha) < power:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if crossed_power(n, mid, sd, face_var, alpha) < power else (lo, mid)
    return hi


def face_sd(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """Standard deviation of one seed's accuracy difference from sampling the test faces
    alone (the trained pair held fixed): sqrt((pb + pc - (pb - pc)^2) / n), with pb, pc the
    fractions of faces only a / only b gets right."""
    n = len(right_a)
    pb = float(np.mean(right_a & ~right_b))
    pc = float(np.mean(~right_a & right_b))
    return math.sqrt(max(pb + pc - (pb - pc) ** 2, 0.0) / n)
