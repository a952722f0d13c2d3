"""ASHA whose rung records survive a killed driver (`early_stopping: {name: asha}`).

Tune checkpoints the searcher, not the scheduler, so a resumed sweep would forget which
trials ASHA compared at each rung. `ResumableASHA` writes its rung records to the ledger's
`asha_rungs.yaml` (sweep.runtime.ledger) after every change and reads them back when Tune hands it the metric on
resume. Only the records are kept (not the scheduler's whole state: Tune sets `metric` and
`mode` again on every start, and a restored value makes it refuse to run). A trial that
crashes or diverges is recorded at the rung it would have reached next with the worst
value of the metric, as the ASHA paper counts a failed configuration.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from nrfer.config import ConfigError
from nrfer.val_metrics import VAL_METRICS
from sweep.compat.ray_tune import (
    asha_bracket_of,
    asha_num_stopped,
    asha_rungs,
    asha_score_sign,
    asha_time_attr,
)
from sweep.runtime.ledger import ASHA
from sweep.runtime.ledger import write as ledger_write
from sweep.runtime.stopping.base import StoppingRule

log = logging.getLogger("nrfer.sweep")
STATE_VERSION = 1
# The worst value each sweep metric can take: what a failed trial is recorded with. Finite,
# because ASHA's cut-off interpolates between records (an infinity would make it NaN).
METRIC_WORST = {m.name: m.worst for m in VAL_METRICS.values()}


# libyaml's dumper where PyYAML has it: 5x faster on 640 trials' records (6 vs 30 ms), which
# are written after every result that changes a rung
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(records: dict) -> str:
    return yaml.dump(records, Dumper=_DUMPER, sort_keys=False)


class ResumableASHA(ASHAScheduler):
    """ASHA that persists its rung records (`state_file`, YAML) and restores them on resume."""

    def __init__(self, state_file: str | Path, **asha_args: Any) -> None:
        super().__init__(**asha_args)
        self.state_file = Path(state_file)
        self._failed: dict[str, tuple[int, float]] = {}  # trial -> (bracket, milestone) marked
        self._saved = ""
        self._counted: tuple | None = None  # what save_records last saw (on_trial_result)

    # Tune calls this on every start, a resumed one too: the moment to read the records back.
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        ok = super().set_search_properties(metric, mode, **spec)
        if ok and self.state_file.is_file():
            self.load_records(self.state_file)
        return ok

    def rung_records(self) -> dict:
        """The records as plain data: each rung's scores in the order trials arrived there,
        a score being metric x (+1 for max, -1 for min)."""
        return {
            "version": STATE_VERSION,
            "metric": self.metric,
            "mode": {1.0: "max", -1.0: "min"}.get(asha_score_sign(self)),
            "num_stopped": asha_num_stopped(self),
            "failed": {t: list(v) for t, v in self._failed.items()},
            "brackets": [
                [{"milestone": m, "scores": dict(recorded)} for m, recorded in rungs]
                for rungs in asha_rungs(self)
            ],
        }

    def load_records(self, path: Path) -> None:
        state = yaml.safe_load(Path(path).read_text())
        mine = [[m for m, _ in rungs] for rungs in asha_rungs(self)]
        theirs = [[r["milestone"] for r in b] for b in state["brackets"]]
        if state.get("version") != STATE_VERSION or mine != theirs:
            raise ValueError(
                f"{path}: ASHA rung records for milestones {theirs} cannot be restored into "
                f"a scheduler with milestones {mine}"
            )
        for rungs, saved in zip(asha_rungs(self), state["brackets"], strict=True):
            for (_, recorded), rung in zip(rungs, saved, strict=True):
                recorded.clear()
                recorded.update({t: float(v) for t, v in rung["scores"].items()})
        asha_num_stopped(self, int(state.get("num_stopped", 0)))
        self._failed = {t: (int(b), float(m)) for t, (b, m) in state.get("failed", {}).items()}
        self._saved = dump(self.rung_records())
        n = sum(len(r["scores"]) for b in state["brackets"] for r in b)
        log.info("ASHA: restored %d rung records from %s", n, path)

    def save_records(self) -> None:
        text = dump(self.rung_records())
        if text == self._saved:
            return
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            ledger_write(self.state_file, text, "asha")
            self._saved = text
        except OSError as e:  # losing this file costs early-stopping knowledge, not results
            log.warning("could not save ASHA's rung records to %s: %s", self.state_file, e)

    def _mark_failed(self, trial_id: str) -> None:
        """Record a failed trial with the worst score at the first rung it has not reached."""
        index = asha_bracket_of(self, trial_id) or 0
        worst = asha_score_sign(self) * METRIC_WORST.get(self.metric, 0.0)
        for milestone, recorded in reversed(asha_rungs(self)[index]):  # lowest milestone first
            if trial_id not in recorded:
                recorded[trial_id] = worst
                self._failed[trial_id] = (index, milestone)
                return

    # Tune's hooks: ASHA's decisions, then the records saved.
    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        failed = self._failed.pop(trial.trial_id, None)
        if failed is not None:  # a failed trial is retried: its worst-value mark goes
            index, milestone = failed
            for m, recorded in asha_rungs(self)[index]:
                if m == milestone:
                    recorded.pop(trial.trial_id, None)
            self.save_records()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        # ASHA only adds records (once per trial and rung) here: a count says whether the
        # result changed them, without dumping every trial's records after each epoch
        count = (
            sum(len(rec) for rungs in asha_rungs(self) for _, rec in rungs),
            asha_num_stopped(self),
        )
        if count != self._counted:
            self.save_records()
            self._counted = count
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if result and result.get("diverged"):
            iteration = result.get(asha_time_attr(self))
            index = asha_bracket_of(self, trial.trial_id)
            # the diverged report itself counts where it landed on a rung; else mark the next
            on_rung = index is not None and any(
                m == iteration and trial.trial_id in rec for m, rec in asha_rungs(self)[index]
            )
            if not on_rung:
                self._mark_failed(trial.trial_id)
        super().on_trial_complete(tune_controller, trial, result)
        self.save_records()

    def on_trial_error(self, tune_controller, trial) -> None:
        super().on_trial_error(tune_controller, trial)
        self._mark_failed(trial.trial_id)
        self.save_records()

    def __getstate__(self) -> dict:
        # Tune pickles the scheduler into tuner.pkl; the file cache is not state
        state = self.__dict__.copy()
        state["_saved"], state["_counted"] = "", None
        return state


def check_records(path: Path) -> None:
    """ASHA's rung records in `path` (if any) are readable; ConfigError naming it if not."""
    if not path.exists():
        return
    try:
        records = yaml.safe_load(path.read_text())
        ok = isinstance(records, dict) and all(
            isinstance(r, dict) and isinstance(r.get("scores"), dict) and "milestone" in r
            for b in records["brackets"]
            for r in b
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{path}: ASHA's rung records are damaged; restore the file, or remove it to "
            "resume without them (early stopping then compares only the trials still to come)"
        )


class Asha(StoppingRule):
    name = "asha"

    def build(self, folder: Path) -> TrialScheduler:
        s = self.settings
        return ResumableASHA(
            folder / ASHA,
            time_attr="training_iteration",
            max_t=s.max_epochs,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )

    def describe(self) -> str:
        s = self.settings
        return (
            f"asha (rungs from epoch {s.grace_period}, reduction {s.reduction_factor}, "
            f"up to {s.max_epochs} epochs)"
        )

    def attach(self, scheduler, folder: Path, announce) -> None:
        scheduler.state_file = folder / ASHA  # a restored one names the killed driver's path

    @classmethod
    def check(cls, folder: Path) -> None:
        check_records(folder / ASHA)
