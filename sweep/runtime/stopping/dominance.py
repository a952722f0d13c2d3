"""Early stopping that respects several objectives: ASHA's rule with "better" read as
"dominates". At each rung, ASHA stops a trial when at least a fraction 1 - 1/rf of the
trials recorded there beat it; here, when at least that fraction of them *dominate* it (each
at least as good on every objective, better on one: sweep.analysis.pareto.dominates), and
at least `min_dominating` of them. With one objective this is ASHA's cut-off.

ASHA ranks trials by one metric, so with accuracy against latency it stops a fast model
whose accuracy is middling at the rung: the very trials that end on the cheap side of the
Pareto front. Here the rung compares the metric at that epoch and the trial's costs
(constant: measured before its first epoch), so a trial that is the fastest, or the most
accurate for its cost, is never stopped. The rungs are ASHA's (first, first * rf, ...,
below the last epoch); where the first goes is the adaptive rule's decision
(sweep.runtime.stopping.adaptive), made on the sweep's own curves.

The records (rung -> trial -> point) are plain data the adaptive scheduler keeps in its
ledger record, so a resumed sweep prunes against the same points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sweep.analysis.pareto import dominates

MIN_DOMINATING = 1  # the floor; the fraction decides where many trials are recorded


def rungs_of(first: int, reduction_factor: int, max_t: int) -> list[int]:
    """ASHA's rung epochs: first * rf^k below max_t."""
    out, r = [], first
    while r < max_t:
        out.append(r)
        r *= reduction_factor
    return out


class DominancePruner:
    """Stops a trial at a rung when at least `fraction` of the other trials recorded there,
    and at least `min_dominating`, dominate it over `senses` (objective -> max | min; the
    metric's value is the one at that epoch)."""

    def __init__(
        self,
        rungs: list[int],
        senses: Mapping[str, str],
        min_dominating: int = MIN_DOMINATING,
        records: Mapping[int, Mapping[str, Mapping[str, float]]] | None = None,
        fraction: float = 0.5,
    ) -> None:
        self.rungs = list(rungs)
        self.senses = dict(senses)
        self.min_dominating = min_dominating
        self.fraction = fraction
        self.records: dict[int, dict[str, dict[str, float]]] = {
            int(r): {t: dict(p) for t, p in trials.items()} for r, trials in (records or {}).items()
        }

    def dominating(self, rung: int, trial_id: str, point: Mapping[str, float]) -> int:
        """How many other trials recorded at `rung` dominate `point`."""
        others = self.records.get(rung, {})
        return sum(dominates(p, point, self.senses) for t, p in others.items() if t != trial_id)

    def on_result(self, trial_id: str, epoch: int, point: Mapping[str, float]) -> bool:
        """Record a trial's point at a rung epoch; True when it is to stop there. A point
        without every objective is recorded nowhere and never stopped."""
        if epoch not in self.rungs or any(k not in point for k in self.senses):
            return False
        here = self.records.setdefault(epoch, {})
        if trial_id in here:  # a rerun of a recorded epoch (a resumed trial): the decision
            # made then, against the trials recorded before it
            before = list(here)[: list(here).index(trial_id)]
            return self.stops([here[t] for t in before], here[trial_id])
        stop = self.stops(list(here.values()), point)
        here[trial_id] = {k: float(point[k]) for k in self.senses}
        return stop

    def stops(self, others: list[Mapping[str, float]], point: Mapping[str, float]) -> bool:
        """Whether `point` stops against `others` recorded at its rung: dominated by at least
        `fraction` of them and at least `min_dominating`."""
        needed = max(self.min_dominating, math.ceil(self.fraction * len(others) - 1e-9))
        return sum(dominates(o, point, self.senses) for o in others) >= needed

    def to_dict(self) -> dict:
        return {
            "rungs": self.rungs,
            "min_dominating": self.min_dominating,
            "fraction": self.fraction,
            "records": {r: dict(t) for r, t in self.records.items()},
        }
