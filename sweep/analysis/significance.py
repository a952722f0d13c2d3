"""Is a study's difference real? Tests that count both sources of noise a FER result has:
which seed trained the model, and which faces happen to be in the test split.

Every comparison pairs a cell with its baseline cell: the same seeds (paired where both
cells ran them) and the same test faces. `right_x[s]` is a bool array over the faces, True
where seed `s`'s model of cell x classified that face right.

- `hierarchical_bootstrap` (the headline interval): resample the seeds, then the faces (the
  same face draw for both cells and every seed: faces are crossed with seeds, not nested),
  and take the difference of mean test accuracy; a percentile interval. It widens with
  seed-to-seed training variance, which per-model tests cannot see.
- `permutation_test` (the headline p): the paired t statistic over seeds (mean per-seed
  difference over its standard error), against its distribution when each (seed, face)'s
  two predictions are swapped at random. Unstudentized, that swap test is exactly pooled
  McNemar, which holds each trained model fixed and calls seed noise significant; dividing
  by the spread over seeds makes a result that flips sign between seeds unconvincing.
- `paired_t_interval`: the per-seed differences' mean and t-interval (seeds paired).
- `mcnemar_exact` per seed (secondary: test-set noise of one trained pair only) and
  `agreement`, which says whether the seeds point the same way.
- `holm`, `benjamini_hochberg`: adjusted p-values over a table's family of comparisons.
- `seeds_needed`: seeds for a paired comparison to detect a difference with a given power.

Resampling is seeded, so a table is the same each time it is computed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 10_000  # bootstrap resamples and permutations per comparison
RESAMPLE_SEED = 0
_CHUNK = 500  # bootstrap resamples drawn at once (a [chunk, faces] weight matrix)


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


def hierarchical_bootstrap(
    right_a: dict[int, np.ndarray],
    right_b: dict[int, np.ndarray],
    resamples: int = RESAMPLES,
    seed: int = RESAMPLE_SEED,
    confidence: float = CONFIDENCE,
) -> Interval | None:
    """Mean test accuracy of a minus b (fractions) with a percentile interval from
    resampling seeds, then faces. Seeds are drawn from the union of both cells' seeds (a
    seed both ran moves both means: paired), faces once per resample for every seed and
    both cells. A resample that leaves a cell without a seed is drawn again. None when
    either cell has no seed, or the two were tested on a different number of faces."""
    if not right_a or not right_b:
        return None
    n_faces = {len(v) for v in (*right_a.values(), *right_b.values())}
    if len(n_faces) != 1:
        return None
    (n,) = n_faces
    seeds = sorted(set(right_a) | set(right_b))
    rng = np.random.default_rng(seed)
    # [faces, seeds] correctness with a column per seed of the union (0 where not run)
    in_a = np.array([s in right_a for s in seeds])
    in_b = np.array([s in right_b for s in seeds])
    ra = np.stack([right_a.get(s, np.zeros(n, bool)) for s in seeds], 1).astype(np.float64)
    rb = np.stack([right_b.get(s, np.zeros(n, bool)) for s in seeds], 1).astype(np.float64)
    out: list[np.ndarray] = []
    while sum(len(x) for x in out) < resamples:
        k = min(_CHUNK, resamples - sum(len(x) for x in out))
        seed_w = rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=k)
        face_w = _face_weights(rng, n, k)
        acc_a, acc_b = face_w @ ra, face_w @ rb  # [k, seeds]: each seed's resampled accuracy
        wa, wb = seed_w * in_a, seed_w * in_b
        ok = (wa.sum(1) > 0) & (wb.sum(1) > 0)
        wa, wb, acc_a, acc_b = wa[ok], wb[ok], acc_a[ok], acc_b[ok]
        out.append((wa * acc_a).sum(1) / wa.sum(1) - (wb * acc_b).sum(1) / wb.sum(1))
    diffs = np.concatenate(out)
    mean_a = statistics.fmean(float(v.mean()) for v in right_a.values())
    mean_b = statistics.fmean(float(v.mean()) for v in right_b.values())
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return Interval(mean_a - mean_b, float(lo), float(hi))


def _face_weights(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """[k, n] bootstrap weights of n faces (each row: how often each face was drawn in n
    draws with replacement, over n): a multinomial, drawn as indices and counted, which
    is several times faster than numpy's multinomial over thousands of faces."""
    idx = rng.integers(0, n, (k, n)) + (np.arange(k) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=k * n).reshape(k, n) / n


def _t_stat(d: np.ndarray) -> np.ndarray:
    """Paired t over the last axis (seeds): mean / (sd / sqrt(n)); 0 where mean and sd are
    both 0, +-inf where only the sd is."""
    n = d.shape[-1]
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / math.sqrt(n))
    return np.where(np.isnan(t), 0.0, t)


def permutation_test(
    right_a: dict[int, np.ndarray],
    right_b: dict[int, np.ndarray],
    permutations: int = RESAMPLES,
    seed: int = RESAMPLE_SEED,
) -> float | None:
    """Two-sided p of the paired t statistic over the seeds both cells ran, under random
    swaps of the two cells' predictions within each (seed, face); None under 2 paired
    seeds. Only faces the two disagree on move under a swap, so a seed's permuted
    difference is (2 Binomial(k, 1/2) - k) / n for its k discordant faces.
    p = (1 + #{|t*| >= |t|}) / (1 + permutations)."""
    shared = sorted(set(right_a) & set(right_b))
    if len(shared) < 2:
        return None
    n = len(right_a[shared[0]])
    observed = np.array([(right_a[s].mean() - right_b[s].mean()) for s in shared])
    discordant = np.array([int(np.sum(right_a[s] != right_b[s])) for s in shared])
    rng = np.random.default_rng(seed)
    heads = rng.binomial(discordant, 0.5, size=(permutations, len(shared)))
    permuted = (2 * heads - discordant) / n
    t_obs = abs(float(_t_stat(observed)))
    extreme = np.abs(_t_stat(permuted)) >= t_obs * (1 - 1e-12)
    return float((1 + extreme.sum()) / (1 + permutations))


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


def paired_power(n: int, delta: float, sd: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test over n seeds for a true mean difference `delta`
    when per-seed differences have standard deviation `sd` (noncentral t)."""
    if n < 2:
        return 0.0
    from scipy.stats import nct, t

    if sd <= 0:
        return 1.0 if delta else alpha
    crit = float(t.ppf(1 - alpha / 2, n - 1))
    ncp = abs(delta) * math.sqrt(n) / sd
    upper = float(nct.sf(crit, n - 1, ncp))
    lower = float(nct.cdf(-crit, n - 1, ncp))  # the wrong side: tiny, at times nan
    if math.isnan(upper):  # scipy's series fails far out in the tail
        from scipy.stats import norm

        upper = float(norm.sf(crit - ncp))
    return min(1.0, upper + (0.0 if math.isnan(lower) else lower))


def seeds_needed(
    delta: float, sd: float, power: float = 0.8, alpha: float = 0.05, most: int = 200
) -> int | None:
    """The fewest seeds (>= 2) whose paired comparison detects `delta` with `power`; None
    when more than `most` would be needed."""
    for n in range(2, most + 1):
        if paired_power(n, delta, sd, alpha) >= power:
            return n
    return None


def detectable(n: int, sd: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference a paired test over n seeds detects with `power`
    (bisection on `paired_power`; inf under 2 seeds)."""
    if n < 2:
        return math.inf
    lo, hi = 0.0, max(sd, 1e-9)
    while paired_power(n, hi, sd, alpha) < power:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if paired_power(n, mid, sd, alpha) < power else (lo, mid)
    return hi


def face_sd(right_a: np.ndarray, right_b: np.ndarray) -> float:
    """Standard deviation of one seed's accuracy difference from sampling the test faces
    alone (the trained pair held fixed): sqrt((pb + pc - (pb - pc)^2) / n), with pb, pc the
    fractions of faces only a / only b gets right."""
    n = len(right_a)
    pb = float(np.mean(right_a & ~right_b))
    pc = float(np.mean(~right_a & right_b))
    return math.sqrt(max(pb + pc - (pb - pc) ** 2, 0.0) / n)
