"""What every early-stopping rule is to the sweep (`sweep.runtime.stopping`): a space file's
`early_stopping` section turned into Ray Tune's scheduler, pointed at its ledger records,
checked before a resume, and described in one line.

A rule is a subclass of `StoppingRule` listed in `sweep.runtime.stopping.RULES` under the
name a space file gives (`early_stopping: {name: ...}`); its keys and defaults are declared
in `sweep.spec.sections` (EARLY_STOPPING_KEYS and `EarlyStopping`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from ray.tune.schedulers import TrialScheduler


class StoppingRule:
    """One rule, for one sweep's spec (`self.settings`: its early_stopping section)."""

    name: ClassVar[str]

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.settings = spec.early_stopping

    def build(self, folder: Path) -> TrialScheduler:
        """A new scheduler; `folder` is the sweep's ledger, where it keeps its records."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: what stops a trial here. The start-up line, `--dry-run` and the parent
        run's tag `nrfer.early_stopping` print it."""
        raise NotImplementedError

    def attach(
        self, scheduler: TrialScheduler, folder: Path, announce: Callable[[Any], None]
    ) -> None:
        """Point `scheduler` (new, or unpickled from a killed driver's Tune state) at its
        records in `folder`, and at `announce` for decisions worth a line and a tag."""

    @classmethod
    def check(cls, folder: Path) -> None:
        """Validate the records a resume will read from `folder`, before Ray starts; an
        error names the file."""
