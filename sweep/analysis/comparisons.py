"""A study's comparisons: each cell against its baseline cell under each of the study's
baselines (`study.baseline`, `study.compare`), from the runs' per-face test predictions,
with the tests of `sweep.analysis.significance`, multiplicity-adjusted over the whole table; and the
seeds a comparison needs (`plan`).

A run is one draw of the training noise, its test split one draw of the faces, and the
two are crossed (every seed of both cells is tested on the same faces). So the headline
interval and p are the crossed seeds x faces ones (`significance.crossed_interval`): the
spread of the per-seed differences over the seeds, plus the faces' shared part; per-seed
McNemar only says how one trained pair differs on these faces.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sweep.analysis.significance import (
    Crossed,
    Interval,
    agreement,
    benjamini_hochberg,
    crossed_interval,
    detectable,
    discordant,
    face_sd,
    holm,
    mcnemar_exact,
    paired_t_interval,
    seeds_needed,
)

ALPHA = 0.05
POWER = 0.8
PLAN_DELTAS = (0.5, 1.0, 2.0)  # points: the line under each table


def cell_key(cell: dict[str, Any]) -> str:
    """A cell as a key: its values as sorted JSON (the runs' `nrfer.study.cell` tag)."""
    return json.dumps(cell, sort_keys=True)


@dataclass
class Comparison:
    """One cell against one baseline cell (test accuracy, fractions)."""

    block: int  # index into study.baselines
    cell: dict[str, Any]
    base: dict[str, Any]
    seeds: list[int] = field(default_factory=list)  # paired: both cells have predictions
    crossed: Crossed | None = None  # mean(cell) - mean(base) over seeds x faces, its p
    paired: Interval | None = None  # mean per-seed difference, t-interval (seeds only)
    p: float | None = None  # the crossed p (>= 2 paired seeds)
    p_holm: float | None = None
    p_bh: float | None = None
    per_seed: dict[int, dict] = field(default_factory=dict)  # seed -> diff, b, c, mcnemar p
    pooled_mcnemar: float | None = None  # test-set noise only (kept for the CSV)
    face_sds: list[float] = field(default_factory=list)  # per seed, from the faces alone
    missing: str = ""  # why there are no numbers

    @property
    def interval(self) -> Interval | None:
        """The headline: the crossed seeds x faces 95% interval."""
        return None if self.crossed is None else self.crossed.interval

    @property
    def diffs(self) -> list[float]:
        return [self.per_seed[s]["diff"] for s in self.seeds]

    @property
    def agreement(self) -> str:
        return agreement(self.diffs)

    @property
    def verdict(self) -> str:
        """'cell better' / 'baseline better' when the Holm-adjusted p is under ALPHA (its
        crossed interval then excludes 0), else 'not shown'."""
        iv = self.interval
        if self.p_holm is None or iv is None:
            return "n/a (< 2 seeds)" if not self.missing else "n/a"
        if self.p_holm < ALPHA and iv.excludes_zero:
            return "cell better" if iv.estimate > 0 else "baseline better"
        return "not shown"


def correct(predictions: dict) -> np.ndarray:
    return predictions["probs"].argmax(1) == predictions["labels"]


def compare_cells(spec, cells: list, predictions, condition: str = "") -> list:
    """Every cell against its baseline cell under each of spec.study.baselines, in block
    order then grid order, adjusted for multiplicity over all of them; each comparison is
    also appended to its cell's `comparisons` (a `condition`, a degradation's label: to its
    `degraded[condition]`). `predictions(run_id)` -> {"probs", "labels"} of that run's
    test split (under that condition), or None."""
    by_key = {cell_key(c.cell): c for c in cells}
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}  # run -> (right?, labels)

    def right(run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        if run_id not in cache:
            got = predictions(run_id)
            cache[run_id] = None if got is None else (correct(got), got["labels"])
        return cache[run_id]

    out = []
    for block, baseline in enumerate(spec.study.baselines):
        for c in cells:
            base_cell = spec.baseline_of(c.cell, baseline, "study.compare")
            if base_cell is None:
                continue
            comp = Comparison(block, c.cell, base_cell)
            base = by_key.get(cell_key(base_cell))
            if base is None or c.n == 0 or base.n == 0:
                comp.missing = "no finished run" if base is not None else "no baseline cell"
            else:
                fill(comp, c, base, right)
            (c.degraded.setdefault(condition, []) if condition else c.comparisons).append(comp)
            out.append(comp)
    adjust(out)
    return out


def fill(comp: Comparison, cell, base, right) -> None:
    """The numbers of one comparison from the two cells' runs."""
    mine = {s: right(r) for s, r in cell.run_ids.items()}
    theirs = {s: right(r) for s, r in base.run_ids.items()}
    mine = {s: v for s, v in mine.items() if v is not None}
    theirs = {s: v for s, v in theirs.items() if v is not None}
    for seed in sorted(set(mine) & set(theirs)):
        (a, la), (b, lb) = mine[seed], theirs[seed]
        if len(la) != len(lb) or (la != lb).any():
            raise ValueError(
                f"seed {seed}: cell {comp.cell} and its baseline {comp.base} were tested on "
                "different faces; their predictions cannot be paired"
            )
        only_a, only_b = discordant(a, b)
        comp.seeds.append(seed)
        comp.per_seed[seed] = {
            "diff": float(a.mean() - b.mean()),
            "b": only_a,
            "c": only_b,
            "p": mcnemar_exact(only_a, only_b),
        }
        comp.face_sds.append(face_sd(a, b))
    if not mine or not theirs:
        comp.missing = "no test predictions"
        return
    right_a = {s: v[0] for s, v in mine.items()}
    right_b = {s: v[0] for s, v in theirs.items()}
    comp.crossed = crossed_interval(right_a, right_b)
    comp.paired = paired_t_interval(comp.diffs)
    comp.p = None if comp.crossed is None else comp.crossed.p
    if comp.seeds:
        b = sum(v["b"] for v in comp.per_seed.values())
        c = sum(v["c"] for v in comp.per_seed.values())
        comp.pooled_mcnemar = mcnemar_exact(b, c)


def adjust(comparisons: list[Comparison]) -> None:
    """Holm and Benjamini-Hochberg over every comparison with a p-value (the family)."""
    family = [c for c in comparisons if c.p is not None]
    ps = [c.p for c in comparisons if c.p is not None]
    for c, h, bh in zip(family, holm(ps), benjamini_hochberg(ps), strict=True):
        c.p_holm, c.p_bh = h, bh


def family_size(comparisons: list[Comparison]) -> int:
    return sum(c.p is not None for c in comparisons)


# --- how many seeds ----------------------------------------------------------------------


CAPPED = "no number of seeds (the faces' shared part alone caps the power: more test faces would)"


@dataclass(frozen=True)
class Plan:
    """Seeds needed for a crossed comparison, from the measured spread (fractions), at the
    level a verdict needs after correcting over the table's family (alpha / comparisons:
    Holm's first step)."""

    delta: float
    sd: float  # per-seed difference sd used: max(seed spread, face-level floor)
    seed_sd: float | None  # pooled sd of per-seed differences (None: unmeasured)
    face_sd: float  # mean sd of one seed's difference from the faces alone
    face_var: float  # the faces' shared part of the difference's variance (seeds don't shrink it)
    df: int  # degrees of freedom of seed_sd
    comparisons: int  # the family the verdict is corrected over
    seeds: int | None  # None: more than `most`, or no number of seeds
    power: float = POWER
    alpha: float = ALPHA  # the family's level; each comparison is planned at alpha / m

    @property
    def level(self) -> float:
        return self.alpha / max(self.comparisons, 1)

    @property
    def capped(self) -> bool:
        """No number of seeds reaches the power: the faces' shared part alone caps it."""
        if self.seeds:
            return False
        return seeds_needed(self.delta, 0.0, self.power, self.level, face_var=self.face_var) is None

    @property
    def seeds_text(self) -> str:
        if self.seeds:
            return f"{self.seeds} seeds"
        if self.capped:
            return CAPPED
        return "more than 200 seeds"

    def line(self) -> str:
        return f"Δ={100 * self.delta:g} pt: {self.seeds_text}"


def spread(comparisons: list[Comparison]) -> tuple[float | None, int, float, float]:
    """(pooled sd of per-seed differences over comparisons with >= 2 paired seeds, its
    degrees of freedom, mean face-level sd of one seed's difference, mean shared face
    variance of the crossed comparisons)."""
    ss, df = 0.0, 0
    for c in comparisons:
        if len(c.seeds) >= 2:
            ss += statistics.variance(c.diffs) * (len(c.seeds) - 1)
            df += len(c.seeds) - 1
    faces = [s for c in comparisons for s in c.face_sds]
    shared = [c.crossed.face_var for c in comparisons if c.crossed is not None]
    return (
        (math.sqrt(ss / df) if df else None),
        df,
        (statistics.fmean(faces) if faces else 0.0),
        (statistics.fmean(shared) if shared else 0.0),
    )


def plan(
    comparisons: list[Comparison],
    delta: float,
    power: float = POWER,
    alpha: float = ALPHA,
    family: int | None = None,
) -> Plan | None:
    """Seeds for the crossed test to detect a true difference of `delta` (a fraction) with
    `power` at two-sided alpha / m, m the family the verdict is Holm-corrected over (`family`,
    or the comparisons with seeds); per-seed differences having the measured sd (pooled
    over the comparisons, never below what the test faces alone give) and the faces'
    shared variance as measured. None without a comparison with numbers."""
    seed_sd, df, f_sd, f_var = spread(comparisons)
    if seed_sd is None and not f_sd:
        return None
    sd = max(seed_sd or 0.0, f_sd)
    m = family if family is not None else sum(bool(c.seeds) for c in comparisons)
    level = alpha / max(m, 1)
    needed = seeds_needed(delta, sd, power, level, face_var=f_var)
    return Plan(delta, sd, seed_sd, f_sd, f_var, df, m, needed, power, alpha)


def plan_text(comparisons: list[Comparison], seeds: int, deltas=PLAN_DELTAS) -> str:
    """One line: the seeds each difference in `deltas` (points) needs for a verdict after
    the table's correction, the difference the study's own `seeds` and 10 seeds can
    detect, and what it rests on."""
    plans = [p for p in (plan(comparisons, d / 100) for d in deltas) if p is not None]
    if not plans:  # (one for every delta, or none: they rest on the same numbers)
        return ""
    p = plans[0]

    def detects(n: int) -> str:
        d = 100 * detectable(n, p.sd, p.power, p.level, p.face_var)
        return f"{n} seeds detect Δ ≥ {d:.1f} pt" if d <= 100 else f"{n} seeds detect nothing"

    can = ", ".join(detects(n) for n in sorted({max(seeds, 2), 10}))
    basis = (
        f"per-seed difference sd {100 * p.seed_sd:.2f} pt pooled over {p.comparisons} "
        f"comparisons ({p.df} df)"
        if p.seed_sd is not None
        else "seed spread unmeasured (one seed per cell): a lower bound from the faces alone"
    )
    capped = [x for x in plans if x.capped]
    lines = [x.line() for x in plans if not x.capped]
    if capped:
        lines.append(f"Δ={', '.join(f'{100 * x.delta:g}' for x in capped)} pt: {CAPPED}")
    return (
        f"Seeds needed for {int(100 * p.power)}% power of a verdict (crossed seeds x faces "
        f"test, two-sided α={p.alpha:g}/{p.comparisons}={p.level:.2g}, the first step of Holm "
        f"over this table's {p.comparisons} comparisons): "
        + ", ".join(lines)
        + f" ({can}); {basis}, face-level sd {100 * p.face_sd:.2f} pt, shared face part "
        f"sd {100 * math.sqrt(p.face_var):.2f} pt."
    )
