"""Several objectives: which trials are Pareto-optimal, and which one a user picks
(`nrfer best --pick 'max val_acc where latency_ms < 5'`; issue 36's building blocks: the
sweep's `objectives:` will hand its trials' values to these).

A point dominates another when it is at least as good on every objective and better on one
(each objective with its sense, max or min). Points missing an objective (a trial that
never measured it) are on no front.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SENSES = ("max", "min")


def trial_point(
    metric: str, value: float, measured: Mapping[str, float | None], names: Sequence[str]
) -> dict[str, float]:
    """A trial's point over the objectives `names`: the sweep metric at its best epoch
    (`value`), every other objective (a cost: the same each epoch) as measured; one missing
    from `measured` is left out (such a point is on no front). The report, the HTML report,
    `nrfer best --pick` and the adaptive rule's dominance all build their points here."""
    others = {n: v for n in names if n != metric and (v := measured.get(n)) is not None}
    return {metric: float(value), **{n: float(v) for n, v in others.items()}}


def _better_or_equal(a: float, b: float, sense: str) -> bool:
    return a >= b if sense == "max" else a <= b


def dominates(a: Mapping[str, float], b: Mapping[str, float], senses: Mapping[str, str]) -> bool:
    """Whether point `a` dominates `b` over the objectives `senses` (name -> max | min)."""
    strictly = False
    for name, sense in senses.items():
        if not _better_or_equal(a[name], b[name], sense):
            return False
        if a[name] != b[name]:
            strictly = True
    return strictly


def _complete(point: Mapping[str, float], senses: Mapping[str, str]) -> bool:
    return all(isinstance(point.get(n), int | float) and not math.isnan(point[n]) for n in senses)


def pareto_front(points: Sequence[Mapping[str, float]], senses: Mapping[str, str]) -> list[int]:
    """Indices of the non-dominated points, in input order (equal points are all kept)."""
    for name, sense in senses.items():
        if sense not in SENSES:
            raise ValueError(f"objective {name}: sense {sense!r}; expected max or min")
    ok = [i for i, p in enumerate(points) if _complete(p, senses)]
    return [i for i in ok if not any(dominates(points[j], points[i], senses) for j in ok if j != i)]


def fronts(points: Sequence[Mapping[str, float]], senses: Mapping[str, str]) -> list[list[int]]:
    """Non-dominated sorting: the first front, then the front of what is left, ..."""
    left = [i for i, p in enumerate(points) if _complete(p, senses)]
    out = []
    while left:
        sub = [points[i] for i in left]
        front = [left[k] for k in pareto_front(sub, senses)]
        out.append(front)
        left = [i for i in left if i not in front]
    return out


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
# one way to read each number (no two quantifiers over the same digits): linear time on any
# input, where `\d+\.?\d*` backtracked quadratically over a long run of digits
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
PICK_MAX_CHARS = 1000
_PICK = re.compile(rf"^\s*(max|min)\s+({_NAME})\s*(?:where\s+(.+))?$", re.IGNORECASE)
_CONSTRAINT = re.compile(rf"^\s*({_NAME})\s*(<=|>=|<|>)\s*({_NUMBER})\s*$")


@dataclass(frozen=True)
class Pick:
    """`max val_acc where latency_ms < 5 and params <= 5e6`: the objective to optimise and
    the constraints a point must meet."""

    sense: str
    objective: str
    constraints: tuple[tuple[str, str, float], ...] = ()
    text: str = ""  # as the user wrote it

    def admits(self, point: Mapping[str, float]) -> bool:
        return all(
            name in point and OPS[op](point[name], bound) for name, op, bound in self.constraints
        )


def parse_pick(text: str) -> Pick:
    """A --pick expression; an error names the part it could not read and the form."""
    form = "'max|min OBJECTIVE [where NAME <|<=|>|>= NUMBER [and ...]]'"
    if len(text) > PICK_MAX_CHARS:
        raise ValueError(f"--pick: {len(text):,} characters; at most {PICK_MAX_CHARS} ({form})")
    m = _PICK.match(text)
    if m is None:
        raise ValueError(f"--pick {text!r}: expected {form}")
    constraints = []
    if m.group(3):
        for part in re.split(r"\s+and\s+", m.group(3).strip(), flags=re.IGNORECASE):
            c = _CONSTRAINT.match(part)
            if c is None:
                raise ValueError(f"--pick: cannot read the constraint {part.strip()!r}; {form}")
            constraints.append((c.group(1), c.group(2), float(c.group(3))))
    return Pick(m.group(1).lower(), m.group(2), tuple(constraints), text.strip())


COST_SENSES = {"latency_ms": "min", "params": "min", "gflops": "min"}  # lower is cheaper


def choose(
    points: Sequence[Mapping[str, float]], pick: Pick, senses: Mapping[str, str] | None = None
) -> int:
    """The index of the point `pick` chooses: the best objective among the points that meet
    its constraints; among points equal on it, one that no other equal point dominates on
    the other objectives (`senses`, and the costs: lower latency, params, GFLOPs), then
    the first; an error says what no point meets."""
    names = {pick.objective, *(n for n, _, _ in pick.constraints)}
    have = set().union(*(p.keys() for p in points)) if points else set()
    missing = sorted(names - have)
    if missing:
        raise ValueError(
            f"--pick: no trial has {', '.join(missing)} (they have: {', '.join(sorted(have))})"
        )
    admitted = [i for i, p in enumerate(points) if pick.objective in p and pick.admits(p)]
    if not admitted:
        shown = " and ".join(f"{n} {op} {b:g}" for n, op, b in pick.constraints)
        raise ValueError(f"--pick: no trial meets {shown} (of {len(points)} trials)")
    sign = 1 if pick.sense == "max" else -1
    best = max(sign * points[i][pick.objective] for i in admitted)
    tied = [i for i in admitted if sign * points[i][pick.objective] == best]
    others = {**COST_SENSES, **(senses or {})}
    others = {k: v for k, v in others.items() if k != pick.objective}
    shared = {k: v for k, v in others.items() if all(k in points[i] for i in tied)}
    undominated = [
        i for i in tied if not any(dominates(points[j], points[i], shared) for j in tied if j != i)
    ]
    return min(undominated or tied)
