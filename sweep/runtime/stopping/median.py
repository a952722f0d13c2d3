"""The median rule (`early_stopping: {name: median}`), the worked example of a rule
(docs/sweeps.md, "Writing a rule"): from epoch `grace_period` on, a trial stops when its
best value so far is worse than the median of the values the other trials reported at the
same epoch, once at least `min_samples` of them have (Optuna's MedianPruner, Ray Tune's
MedianStoppingRule, with epochs as steps). Its records (trial, epoch, value) are appended to
the ledger's `median_stopping.jsonl`, one line per result (not the whole record rewritten on
every epoch), so a resumed sweep compares against the same trials.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.runtime.stopping.base import StoppingRule

log = logging.getLogger("nrfer.sweep")
RECORDS = "median_stopping.jsonl"


class MedianStopping(FIFOScheduler):
    def __init__(self, state_file: Path, grace_period: int, min_samples: int) -> None:
        super().__init__()
        self.state_file = Path(state_file)
        self.grace_period, self.min_samples = grace_period, min_samples
        self.metric_name: str | None = None
        self.sign = 1.0
        self.values: dict[str, dict[int, float]] = {}  # trial -> epoch -> metric x sign

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        self.metric_name = metric or self.metric_name
        self.sign = -1.0 if mode == "min" else 1.0
        if self.state_file.is_file():  # a resumed sweep: the trials it had compared
            self.values = read_records(self.state_file)
        return True

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.metric_name not in result or "training_iteration" not in result:
            return TrialScheduler.CONTINUE
        epoch = int(result["training_iteration"])
        mine = self.values.setdefault(trial.trial_id, {})
        mine[epoch] = self.sign * float(result[self.metric_name])
        self.record(trial.trial_id, epoch, mine[epoch])
        others = [v[epoch] for t, v in self.values.items() if t != trial.trial_id and epoch in v]
        if epoch < self.grace_period or len(others) < self.min_samples:
            return TrialScheduler.CONTINUE
        best = max(v for e, v in mine.items() if e <= epoch)
        return TrialScheduler.STOP if best < statistics.median(others) else TrialScheduler.CONTINUE

    def record(self, trial_id: str, epoch: int, value: float) -> None:
        """One result appended to the records (a later line for the same epoch wins)."""
        line = json.dumps({"trial": trial_id, "epoch": epoch, "value": value}) + "\n"
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.state_file, "a") as f:
                f.write(line)
        except OSError as e:  # costs the comparison on a resume, not results
            log.warning("could not save the median rule's records %s: %s", self.state_file, e)


def read_records(path: Path) -> dict[str, dict[int, float]]:
    """trial -> epoch -> value x sign, from the appended lines."""
    try:
        values: dict[str, dict[int, float]] = {}
        for line in path.read_text().splitlines():
            r = json.loads(line)
            values.setdefault(str(r["trial"]), {})[int(r["epoch"])] = float(r["value"])
        return values
    except (OSError, ValueError, KeyError, TypeError) as e:
        from nrfer.config import ConfigError

        raise ConfigError(
            f"{path}: the median rule's records are damaged ({type(e).__name__}); restore the "
            "file, or remove it to resume comparing only the trials still to come"
        ) from None


class Median(StoppingRule):
    name = "median"

    def build(self, folder: Path) -> TrialScheduler:
        s = self.settings
        return MedianStopping(folder / RECORDS, s.grace_period, s.min_samples)

    def describe(self) -> str:
        s = self.settings
        return (
            f"median (from epoch {s.grace_period}, a trial stops when its best so far is worse "
            f"than the median of at least {s.min_samples} others at the same epoch; up to "
            f"{s.max_epochs} epochs)"
        )

    def attach(self, scheduler, folder: Path, announce) -> None:
        scheduler.state_file = folder / RECORDS

    @classmethod
    def check(cls, folder: Path) -> None:
        if (folder / RECORDS).is_file():
            read_records(folder / RECORDS)
