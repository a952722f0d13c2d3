"""One searched parameter of a space: its distribution, its `when:` conditions, how it is
declared on an Optuna trial (define-by-run) and parsed from the space file."""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

from nrfer.registry import suggest

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int", "quantized")


class SpaceError(ValueError):
    """A search-space file that cannot be used."""


@dataclass
class Param:
    key: str  # dotted trial-config path, e.g. "model.resizer.n"
    kind: str  # one of DISTRIBUTIONS
    args: list  # choice: values; uniform/loguniform/int: [low, high]; quantized: [low, high, q]
    when: dict[str, list] = field(default_factory=dict)  # other param -> allowed values

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in vals for k, vals in self.when.items())

    def suggest(self, trial) -> Any:
        """Declare this parameter on an optuna.Trial (define-by-run)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.args)
        lo, hi = self.args[0], self.args[1]
        if self.kind == "uniform":
            return trial.suggest_float(self.key, lo, hi)
        if self.kind == "loguniform":
            return trial.suggest_float(self.key, lo, hi, log=True)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(lo), int(hi))
        return trial.suggest_float(self.key, lo, hi, step=self.args[2])

    def distribution(self):
        """The same parameter as an Optuna distribution (for studies built from results)."""
        import optuna

        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.args)
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.args[0]), int(self.args[1]))
        step = self.args[2] if self.kind == "quantized" else None
        return optuna.distributions.FloatDistribution(
            self.args[0], self.args[1], log=self.kind == "loguniform", step=step
        )

    def first(self) -> Any:
        return (
            self.args[0]
            if self.kind == "choice"
            else (int(self.args[0]) if self.kind == "int" else self.args[0])
        )


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxstring = _REPR.maxother = 60


def shown(value: Any, limit: int = 80) -> str:
    """A value as quoted in an error message: its repr, cut to `limit` characters (a YAML
    alias bomb's repr is gigabytes)."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text):,} chars)"


def _err(source: str, key: str, msg: str) -> SpaceError:
    return SpaceError(f"{source}: {key}: {msg}")


def _number(source: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _err(source, key, f"expected a number, got {shown(v)}")
    return v


def parse_param(source: str, key: str, body: Any) -> Param:
    where = f"search.{key}"
    if not isinstance(body, dict):
        raise _err(
            source,
            where,
            f"expected a mapping like {{choice: [...]}} or {{uniform: [low, high]}}, got {shown(body)}",
        )
    kinds = [k for k in body if k != "when"]
    unknown = [k for k in kinds if k not in DISTRIBUTIONS]
    if unknown:
        raise _err(
            source,
            where,
            f"unknown distribution {unknown[0]!r}; {suggest(str(unknown[0]), list(DISTRIBUTIONS))}",
        )
    if len(kinds) != 1:
        raise _err(
            source,
            where,
            f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}, got {kinds or 'none'}",
        )
    kind, args = kinds[0], body[kinds[0]]
    if not isinstance(args, list):
        raise _err(source, f"{where}.{kind}", f"expected a list, got {shown(args)}")
    if kind == "choice":
        if not args:
            raise _err(source, f"{where}.choice", "the list of choices is empty")
    else:
        n = 3 if kind == "quantized" else 2
        if len(args) != n:
            shape = "[low, high, step]" if kind == "quantized" else "[low, high]"
            raise _err(source, f"{where}.{kind}", f"expected {shape}, got {shown(args)}")
        lo, hi = (_number(source, f"{where}.{kind}", a) for a in args[:2])
        if lo > hi:
            raise _err(source, f"{where}.{kind}", f"low {lo} > high {hi}")
        if kind == "loguniform" and lo <= 0:
            raise _err(source, f"{where}.{kind}", f"loguniform needs low > 0, got {lo}")
        if kind == "int" and (int(lo) != lo or int(hi) != hi):
            raise _err(source, f"{where}.{kind}", f"int bounds must be integers, got {shown(args)}")
        if kind == "quantized" and _number(source, f"{where}.{kind}", args[2]) <= 0:
            raise _err(source, f"{where}.{kind}", f"step must be > 0, got {args[2]}")
    when = body.get("when", {}) or {}
    if not isinstance(when, dict):
        raise _err(
            source,
            f"{where}.when",
            f"expected a mapping of parameter -> value(s), got {shown(when)}",
        )
    when = {k: (v if isinstance(v, list) else [v]) for k, v in when.items()}
    return Param(key, kind, list(args), when)
