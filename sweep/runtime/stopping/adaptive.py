"""Early stopping that earns its place (`early_stopping: {name: adaptive}`): ASHA whose first
rung is placed by the sweep's own learning curves, or no early stopping at all.

ASHA's bet is that a trial's rank at an early epoch predicts its rank at the end. On short
or noisy curves it does not (bench/NOTES.md: with its first rung at epoch 2, 4 or 8, ASHA
never reached FIFO + random's final median on either recording), so here the bet is
measured before it is placed. The first `min_trials` trials run to their last epoch (FIFO);
then, for each epoch e, the Spearman rank correlation between the completed trials' metric
at e and their best over the whole run, with a one-sided 95% bootstrap lower bound over the
trials (`resamples`, seeded). The first rung is the first epoch whose lower bound reaches
`min_rank_correlation`; if no epoch before the last does, the sweep does no early stopping.
With a rung, ASHA (rungs e, e*rf, ...) takes over: the completed trials and those running are
replayed into it, so its cut-offs start informed. The decision and its numbers go to the
ledger's `early_stopping.yaml` (a resume keeps it), to the terminal and to the parent run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweep.analysis.pareto import trial_point
from sweep.runtime.ledger import ADAPTIVE, ADAPTIVE_VERSION, ASHA, read_adaptive
from sweep.runtime.ledger import write as ledger_write
from sweep.runtime.stopping.asha import ResumableASHA, check_records
from sweep.runtime.stopping.base import StoppingRule
from sweep.runtime.stopping.dominance import MIN_DOMINATING, DominancePruner, rungs_of

log = logging.getLogger("nrfer.sweep")
STATE_VERSION = ADAPTIVE_VERSION  # of early_stopping.yaml (read by sweep.runtime.ledger)
RESAMPLES = 1000
ALPHA = 0.05  # one-sided: the lower bound is the 5th percentile of the bootstrap


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x and y [B, n] (average ranks for ties); 0 where
    a row has no spread (no evidence of agreement)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry).sum(axis=1) / den
    return np.where(den > 0, rho, 0.0)


@dataclass(frozen=True)
class RungChoice:
    """Where the first rung goes, and why: per epoch before the last, rho and its bound."""

    epoch: int | None  # None: no epoch qualifies, no early stopping
    trials: int
    threshold: float
    rows: list[dict] = field(default_factory=list)  # {epoch, rho, low}
    # several objectives: at the rungs a trial stops where this many trials dominate it
    min_dominating: int | None = None
    next_look: int | None = None  # no rung yet: the completed trials at which it looks again

    def line(self) -> str:
        shown = ", ".join(f"e{r['epoch']} {r['rho']:.2f} [≥{r['low']:.2f}]" for r in self.rows)
        head = (
            f"first rung at epoch {self.epoch}"
            if self.epoch
            else f"no epoch qualifies yet: no early stopping until it looks again at "
            f"{self.next_look} completed trials"
            if self.next_look
            else "no epoch qualifies: no early stopping for this sweep"
        )
        if self.epoch and self.min_dominating:
            head += (
                " (several objectives: a trial stops at a rung only where as many trials "
                f"dominate it as ASHA needs to beat it, and at least {self.min_dominating})"
            )
        return (
            f"early stopping (adaptive): {head}. Spearman rho of each epoch's value with the "
            f"final best over {self.trials} completed trials, with its one-sided 95% "
            f"bootstrap bound (needs ≥ {self.threshold:g}): {shown}"
        )

    def tag(self) -> str:
        """The parent run's `nrfer.early_stopping` once the rule has looked."""
        rung = (
            f"first rung at epoch {self.epoch}"
            if self.epoch
            else f"none yet: looks again at {self.next_look} completed trials"
            if self.next_look
            else "none: no epoch qualifies"
        )
        return f"adaptive: {rung}"

    def metrics(self) -> list[tuple[str, float, int]]:
        """(name, value, step = epoch): each epoch's rho and its bootstrap bound."""
        return [
            (name, row[key], row["epoch"])
            for row in self.rows
            for name, key in (("early_stopping_rho", "rho"), ("early_stopping_rho_low", "low"))
        ]

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "trials": self.trials,
            "threshold": self.threshold,
            "rows": [dict(r) for r in self.rows],
            **({"min_dominating": self.min_dominating} if self.min_dominating else {}),
            **({"next_look": self.next_look} if self.next_look else {}),
        }


def choose_rung(
    curves: list[list[float]],
    max_epochs: int,
    threshold: float,
    sign: float = 1.0,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> RungChoice:
    """The first epoch e < max_epochs at which the completed `curves` (each max_epochs values
    of the metric; `sign` -1 for a metric to minimise) rank their final best with a bootstrap
    lower bound of Spearman's rho at least `threshold`; None if no epoch does."""
    y = np.array([[sign * v for v in c[:max_epochs]] for c in curves], dtype=float)
    n = len(y)
    final = y.max(axis=1)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    rows, chosen = [], None
    for e in range(1, max_epochs):
        at = y[:, e - 1]
        rho = float(spearman_rows(at[None], final[None])[0])
        boot = spearman_rows(at[picks], final[picks])
        low = float(np.quantile(boot, ALPHA, method="lower"))
        rows.append({"epoch": e, "rho": round(rho, 4), "low": round(low, 4)})
        if chosen is None and low >= threshold:
            chosen = e
    return RungChoice(chosen, n, threshold, rows)


class _Stub:
    """A trial as ASHA reads it when replayed into it: only its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class AdaptiveStopping(FIFOScheduler):
    """FIFO until `min_trials` trials completed, then ASHA from the chosen rung or FIFO to
    the end (see the module's docstring). With several objectives (`senses`: objective ->
    max | min, the metric among them) the rungs stop by dominance instead of ASHA's rank
    (sweep.runtime.stopping.dominance)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        max_t: int,
        reduction_factor: int,
        min_trials: int,
        threshold: float,
        time_attr: str = "training_iteration",
        resamples: int = RESAMPLES,
        senses: dict[str, str] | None = None,
        min_dominating: int | None = None,
        dominance_fraction: float | None = None,
        looks_again: bool = False,
    ) -> None:
        super().__init__()
        # with no rung placed, look again each time the completed trials double (8, 16, 32..)
        self.looks_again = looks_again
        self.folder = Path(folder)
        self.max_t, self.rf = max_t, reduction_factor
        self.min_trials, self.threshold = min_trials, threshold
        self.time_attr, self.resamples = time_attr, resamples
        self.metric_name: str | None = None
        self.sign = 1.0
        self.curves: dict[str, dict[int, float]] = {}  # trial -> epoch -> metric
        self.completed: dict[str, list[float]] = {}  # trials that ran every epoch
        self.choice: RungChoice | None = None
        self.asha: ResumableASHA | None = None
        self.to_stop: set[str] = set()  # running trials the replay into ASHA stopped
        self.in_asha: set[str] = set()  # trials ASHA was told of (added, not yet ended)
        self.announce: Callable[[RungChoice], None] | None = None  # the driver's (not pickled)
        self.senses = dict(senses) if senses and len(senses) > 1 else None
        self.min_dominating = min_dominating or MIN_DOMINATING
        # ASHA's: stop where 1 - 1/rf of the trials at the rung beat (here: dominate) it
        self.fraction = (
            1 - 1 / reduction_factor if dominance_fraction is None else dominance_fraction
        )
        self.costs: dict[str, dict[str, float]] = {}  # trial -> its other objectives
        self.pruner: DominancePruner | None = None

    @property
    def state_file(self) -> Path:
        return self.folder / ADAPTIVE

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if metric:
            self.metric_name = metric
        if mode:
            self.sign = 1.0 if mode == "max" else -1.0
        super().set_search_properties(metric, mode, **spec)
        if self.state_file.is_file():  # a resumed sweep: what it had decided, or seen
            self.load_record(self.state_file)
        return True

    def load_record(self, path: Path) -> None:
        record = read_adaptive(path)
        self.completed = record["completed"]
        self.costs = record["costs"]
        c = record["choice"]
        self.choice = None if c is None else RungChoice(**c)
        if self.choice is not None:
            pruner = record["pruner"]
            if self.choice.epoch and self.senses and pruner:
                self.pruner = DominancePruner(
                    pruner["rungs"],
                    self.senses,
                    pruner["min_dominating"],
                    pruner["records"],
                    pruner.get("fraction", self.fraction),
                )
            elif self.choice.epoch:
                self.asha = self._build_asha(self.choice.epoch)  # its records restore it
                self.in_asha = set()  # Tune adds the trials it restores again

    def save_record(self) -> None:
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "metric": self.metric_name,
            "choice": None if self.choice is None else self.choice.to_dict(),
            "completed": self.completed,
        }
        if self.senses:
            state["costs"] = {t: c for t, c in self.costs.items() if t in self.completed}
            state["pruner"] = None if self.pruner is None else self.pruner.to_dict()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            ledger_write(self.state_file, yaml.safe_dump(state, sort_keys=False), "adaptive")
        except OSError as e:  # costs the decision's inputs on a resume, not results
            log.warning("could not save the early-stopping record %s: %s", self.state_file, e)

    def _build_asha(self, grace: int) -> ResumableASHA:
        asha = ResumableASHA(
            self.folder / ASHA,
            time_attr=self.time_attr,
            max_t=self.max_t,
            grace_period=grace,
            reduction_factor=self.rf,
        )
        asha.set_search_properties(self.metric_name, "max" if self.sign > 0 else "min")
        return asha

    def decide(self, tune_controller) -> RungChoice:
        """Place the first rung from the completed curves; with one, replay every trial seen
        into ASHA (completed ones to their end) and let it take over."""
        curves = list(self.completed.values())
        choice = choose_rung(curves, self.max_t, self.threshold, self.sign, self.resamples)
        if self.senses:
            choice = replace(choice, min_dominating=self.min_dominating)
        if choice.epoch is None and self.looks_again:
            choice = replace(choice, next_look=2 * len(curves))
        self.choice = choice
        if choice.epoch and self.senses:
            self.start_pruner(choice.epoch)
        elif choice.epoch:
            self.asha = self._build_asha(choice.epoch)
            for tid, curve in self.completed.items():
                self._replay(tune_controller, tid, dict(enumerate(curve, 1)), complete=True)
            for tid, seen in self.curves.items():
                if tid not in self.completed:
                    if self._replay(tune_controller, tid, seen, complete=False):
                        self.to_stop.add(tid)
        self.save_record()
        log.info("%s", choice.line())
        if self.announce is not None:
            self.announce(choice)
        return choice

    def start_pruner(self, first: int) -> None:
        """Dominance at the rungs from `first` (several objectives), the trials seen so far
        replayed into it: a running one it would have stopped stops at its next result."""
        assert self.senses is not None
        self.pruner = DominancePruner(
            rungs_of(first, self.rf, self.max_t),
            self.senses,
            self.min_dominating,
            fraction=self.fraction,
        )
        for tid, curve in self.completed.items():
            for epoch, value in enumerate(curve, 1):
                self.pruner.on_result(tid, epoch, self.point(tid, value))
        for tid, seen in self.curves.items():
            if tid in self.completed:
                continue
            for epoch in sorted(seen):
                if self.pruner.on_result(tid, epoch, self.point(tid, seen[epoch])):
                    self.to_stop.add(tid)
                    break

    def point(self, tid: str, value: float) -> dict[str, float]:
        """A trial's objectives at an epoch: the metric's value there and its costs."""
        assert self.metric_name is not None and self.senses is not None
        return trial_point(self.metric_name, value, self.costs.get(tid, {}), list(self.senses))

    def _replay(self, ctl, tid: str, seen: dict[int, float], complete: bool) -> bool:
        """A trial's results fed to ASHA in order; True if ASHA would have stopped it."""
        assert self.asha is not None and self.metric_name is not None
        stub = _Stub(tid)
        self.asha.on_trial_add(ctl, stub)
        self.in_asha.add(tid)
        stopped, result = False, {}
        for epoch in sorted(seen):
            result = {self.time_attr: epoch, self.metric_name: seen[epoch]}
            if self.asha.on_trial_result(ctl, stub, result) == TrialScheduler.STOP:
                stopped = True
                break
        if complete:  # a running trial ASHA stops ends when Tune ends it (on_trial_complete)
            self.asha.on_trial_complete(ctl, stub, result)
            self.in_asha.discard(tid)
        return stopped and not complete

    # Tune's hooks
    def on_trial_add(self, tune_controller, trial) -> None:
        self.curves.setdefault(trial.trial_id, {})
        if self.asha is not None and trial.trial_id not in self.in_asha:
            self.asha.on_trial_add(tune_controller, trial)
            self.in_asha.add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        tid = trial.trial_id
        if self.metric_name in result and self.time_attr in result:
            self.curves.setdefault(tid, {})[int(result[self.time_attr])] = float(
                result[self.metric_name]
            )
        if self.senses and tid not in self.costs:
            names = [k for k in self.senses if k != self.metric_name]
            if all(k in result for k in names):
                self.costs[tid] = {k: float(result[k]) for k in names}
        if tid in self.to_stop:
            self.to_stop.discard(tid)
            return TrialScheduler.STOP
        if self.pruner is not None and self.metric_name in result and self.time_attr in result:
            epoch = int(result[self.time_attr])
            recorded = epoch in self.pruner.rungs
            stop = self.pruner.on_result(
                tid, epoch, self.point(tid, float(result[self.metric_name]))
            )
            if recorded:
                self.save_record()
            return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
        if self.asha is not None and tid in self.in_asha:
            return self.asha.on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        tid = trial.trial_id
        seen = self.curves.pop(tid, {})
        self.to_stop.discard(tid)
        if self.pruner is not None:
            return
        if self.asha is not None:
            if tid in self.in_asha:
                self.asha.on_trial_complete(tune_controller, trial, result)
                self.in_asha.discard(tid)
            return
        deciding = self.choice is None or (self.choice.epoch is None and self.choice.next_look)
        if deciding and all(e in seen for e in range(1, self.max_t + 1)):
            self.completed[tid] = [seen[e] for e in range(1, self.max_t + 1)]
            look = self.min_trials if self.choice is None else self.choice.next_look
            if look is not None and len(self.completed) >= look:
                self.decide(tune_controller)
            else:
                self.save_record()

    def on_trial_error(self, tune_controller, trial) -> None:
        self.curves.pop(trial.trial_id, None)
        if self.asha is not None and trial.trial_id in self.in_asha:
            self.asha.on_trial_error(tune_controller, trial)
            self.in_asha.discard(trial.trial_id)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self.curves.pop(trial.trial_id, None)
        if self.asha is not None and trial.trial_id in self.in_asha:
            self.asha.on_trial_remove(tune_controller, trial)
            self.in_asha.discard(trial.trial_id)

    def debug_string(self) -> str:
        if self.choice is None:
            return f"adaptive early stopping: {len(self.completed)}/{self.min_trials} trials"
        return self.choice.line()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["announce"] = None  # the driver's closure; set again on resume
        return state


class Adaptive(StoppingRule):
    name = "adaptive"

    def build(self, folder: Path) -> TrialScheduler:
        s, spec = self.settings, self.spec
        return AdaptiveStopping(
            folder,
            max_t=s.max_epochs,
            reduction_factor=s.reduction_factor,
            min_trials=s.min_trials,
            threshold=s.min_rank_correlation,
            senses=spec.senses if spec.multi_objective else None,
            min_dominating=s.min_dominating,
            looks_again=bool(s.looks_again),
        )

    def describe(self) -> str:
        s, spec = self.settings, self.spec
        then = (
            f"rungs where as many trials dominate it on {', '.join(spec.senses)} as ASHA needs "
            f"to beat it (at least {s.min_dominating or MIN_DOMINATING})"
            if spec.multi_objective
            else f"ASHA (reduction {s.reduction_factor})"
        )
        again = ", looking again as they double" if s.looks_again else ""
        return (
            f"adaptive (the first {s.min_trials} trials run their {s.max_epochs} epochs; then "
            f"{then} from the first epoch whose rank correlation with the final value has a "
            f"95% bound >= {s.min_rank_correlation:g}, else none{again})"
        )

    def attach(self, scheduler, folder: Path, announce) -> None:
        scheduler.folder = folder  # its ASHA's records too (a restored one rebuilds its ASHA)
        scheduler.announce = announce

    @classmethod
    def check(cls, folder: Path) -> None:
        if (folder / ADAPTIVE).is_file():
            read_adaptive(folder / ADAPTIVE)
        check_records(folder / ASHA)
