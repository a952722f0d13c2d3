"""The validation metrics a sweep selects on, stated once (light: no torch, so a space file
is read and `nrfer ui` starts without it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ValMetric:
    """A validation metric a sweep can select on: its name as trials report it, whether more
    is better, and the worst value it can take (what a failed trial is recorded with; finite,
    since ASHA interpolates between records)."""

    name: str
    sense: str  # "max" | "min"
    worst: float


# Every validation metric a trial reports each epoch, stated once: the space file's `metric`
# choices, their default sense, the worst value a failed trial reports, `--pick`'s reading.
VAL_METRICS: dict[str, ValMetric] = {
    m.name: m
    for m in (
        ValMetric("val_acc", "max", 0.0),
        ValMetric("val_macro_f1", "max", 0.0),
        ValMetric("val_loss", "min", 1.0e6),
    )
}
