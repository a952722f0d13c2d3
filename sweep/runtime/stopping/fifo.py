"""No early stopping: every trial runs its epochs (`early_stopping: {name: fifo}`)."""

from __future__ import annotations

from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.runtime.stopping.base import StoppingRule


class Fifo(StoppingRule):
    name = "fifo"

    def build(self, folder: Path) -> TrialScheduler:
        return FIFOScheduler()

    def describe(self) -> str:
        return f"fifo (no early stopping: every trial runs its {self.settings.max_epochs} epochs)"
