"""The ledger: every record a sweep keeps for crash recovery, in one folder beside Tune's
files, `<storage>/<sweep>/nrfer_ledger/`, written only through this module.

Records (YAML or one small JSON per trial, never a top-level `.json`/`.pkl` of the sweep
folder: a restored Tuner syncs its start-time copies of those back over newer ones):

- `sweep.yaml`: the resolved space (and its sha256), status RUNNING / INTERRUPTED /
  FINISHED, the sweep's instance id, its parent run, the number of trials at its end;
- `asha_rungs.yaml`: ASHA's rung records (Tune checkpoints the searcher, not the scheduler);
- `early_stopping.yaml` (`early_stopping: {name: adaptive}`): the completed trials' curves
  until the first rung is placed, then the decision and its numbers (sweep.runtime.stopping.adaptive);
- `ended/<trial id>.json`: a trial Tune ended: completed (its final result) or failed, its
  score and folder; then its retention (best.pt kept or not), then its files removed;
- `kept.yaml`: the top K trials whose best.pt MLflow keeps, and those pushed out whose
  uploaded copy is still to delete.

The order of writes (each atomic: a kill leaves the old file or the new one):
1. `sweep.yaml` RUNNING before anything a resume needs exists (no Tune state: a resume
   starts afresh);
2. per result, `asha_rungs.yaml` when a rung changed;
3. per trial that ends: `ended/<id>.json` (ended) -> `kept.yaml` (when it enters the top
   K, after its upload) -> `ended/<id>.json` (retained: its run says which) -> its files
   deleted once Tune's saved state has it ended -> `ended/<id>.json` (removed);
4. `sweep.yaml` INTERRUPTED or FINISHED last.

A resume calls `Ledger.reconcile` once with Tune's saved trials: the records of trials Tune
never saved are dropped, in `kept.yaml` too (they run again under new ids), each ended trial's retention and
file removal is finished where a kill cut it short, pushed-out copies are deleted and the
work folders of unsaved trials go. Running it twice does what running it once does.

For the tests, `NRFER_LEDGER_FAULTS="a>b,c>d"` SIGKILLs the driver's process group between
a write of kind a and the next write, of kind b (once per pair over the sweep's life: the
pairs used are kept in `.faults`), and `NRFER_LEDGER_TRACE=1` lists every write's kind in
`.trace`. Kinds: `sweep:<status>`, `asha`, `adaptive`, `ended`, `kept`, `retained`, `removed`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nrfer.config import ConfigError, fingerprint
from nrfer.files import write_atomic

LEDGER = "nrfer_ledger"
SWEEP, ENDED, KEPT, ASHA = "sweep.yaml", "ended", "kept.yaml", "asha_rungs.yaml"
ADAPTIVE_VERSION = 1  # of the adaptive rule's record
ADAPTIVE = "early_stopping.yaml"  # adaptive early stopping: its completed curves, its decision
RUNNING, INTERRUPTED, FINISHED = "RUNNING", "INTERRUPTED", "FINISHED"
METRIC_RECORDS = "mlflow_backlog"  # trials' local metric records while MLflow is unreachable
# this project's records before the ledger, beside Tune's files: moved in once
OLD_NAMES = {
    "nrfer_sweep.yaml": SWEEP,
    "nrfer_ended": ENDED,
    "nrfer_kept_checkpoints.yaml": KEPT,
    "nrfer_asha_rungs.yaml": ASHA,
}
FAULTS_ENV, TRACE_ENV = "NRFER_LEDGER_FAULTS", "NRFER_LEDGER_TRACE"


def ledger_dir(exp_dir: str | Path) -> Path:
    return Path(exp_dir) / LEDGER


def write(path: Path, text: str, kind: str) -> None:
    """Every ledger write: atomic, with the tests' fault hook before it and trace after."""
    folder = path.parent if path.parent.name != ENDED else path.parent.parent
    if os.environ.get(FAULTS_ENV):
        _maybe_die(folder, kind)
    write_atomic(path, text)
    if os.environ.get(FAULTS_ENV) or os.environ.get(TRACE_ENV):
        _note(folder, kind)


def _faults(folder: Path) -> dict:
    try:
        return json.loads((folder / ".faults").read_text())
    except (OSError, ValueError):
        return {"last": None, "used": []}


def _maybe_die(folder: Path, kind: str) -> None:
    state = _faults(folder)
    pair = f"{state['last']}>{kind}"
    wanted = os.environ[FAULTS_ENV].split(",")
    if pair in wanted and pair not in state["used"]:
        state["used"].append(pair)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / ".faults", json.dumps(state))
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the driver and the Ray it started


def _note(folder: Path, kind: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if os.environ.get(FAULTS_ENV):
        state = _faults(folder)
        state["last"] = kind
        write_atomic(folder / ".faults", json.dumps(state))
    with open(folder / ".trace", "a") as f:
        f.write(f"{os.getpid()} {kind}\n")


@dataclass(frozen=True)
class SavedTrial:
    """A trial as Tune's newest saved experiment state has it."""

    trial_id: str
    status: str  # TERMINATED, ERROR, PENDING, RUNNING, PAUSED
    path: str | None  # Tune's folder of the trial (its checkpoint_* folders)
    score: float | None  # its best value of the sweep's metric (None: diverged or none)


@dataclass
class Ended:
    """One ended trial's record (`ended/<id>.json`)."""

    completed: bool
    result: dict[str, Any]
    score: float | None = None
    path: str | None = None
    kept: bool | None = None  # its retention: None until its run says kept or not
    removed: bool = False  # its Tune checkpoints and work folder deleted

    def __post_init__(self) -> None:
        """Each field of the type it has (a record is read back from a file a person or a
        disk may have changed): a TypeError naming the field otherwise."""
        checks = {
            "completed": isinstance(self.completed, bool),
            "result": isinstance(self.result, dict),
            "score": self.score is None
            or (isinstance(self.score, int | float) and not isinstance(self.score, bool)),
            "path": self.path is None or isinstance(self.path, str),
            "kept": self.kept is None or isinstance(self.kept, bool),
            "removed": isinstance(self.removed, bool),
        }
        for name, ok in checks.items():
            if not ok:
                raise TypeError(f"{name}: {getattr(self, name)!r} is not of the type it must be")


@dataclass
class Reconciled:
    """What `Ledger.reconcile` did."""

    forgotten: list[str] = field(default_factory=list)  # ended records Tune never saved
    retained: list[str] = field(default_factory=list)  # retention finished
    removed: list[str] = field(default_factory=list)  # files deleted
    orphans: list[str] = field(default_factory=list)  # work folders of unsaved trials
    evictions_left: int = 0  # pushed-out best.pt copies MLflow did not delete yet


class Ledger:
    """The sweep's records for crash recovery (see the module's text)."""

    def __init__(self, exp_dir: str | Path) -> None:
        self.exp_dir = Path(exp_dir)
        self.dir = ledger_dir(exp_dir)
        self._migrate()
        self.ended: dict[str, Ended] = {}
        self._waiting: set[str] = set()  # retained, files not removed (read every Tune step)
        for path in sorted((self.dir / ENDED).glob("*.json")):
            try:
                self.ended[path.stem] = Ended(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as e:
                raise ConfigError(
                    f"{path}: an ended trial's record is damaged ({e}); delete it (the trial "
                    "then counts as not ended, and a resume runs it again)"
                ) from None
        self._waiting = set(self.unremoved())

    def _migrate(self) -> None:
        """This project's records from before the ledger, moved in once."""
        if (self.exp_dir / "nrfer_ended.yaml").exists():
            raise ConfigError(
                f"{self.exp_dir / 'nrfer_ended.yaml'}: this sweep's records are from a version "
                "too old to resume; start it anew under another --name"
            )
        old = {o: n for o, n in OLD_NAMES.items() if (self.exp_dir / o).exists()}
        if old and not self.dir.exists():
            self.dir.mkdir(parents=True)
            for o, n in old.items():
                os.replace(self.exp_dir / o, self.dir / n)

    # -- sweep.yaml -------------------------------------------------------------------------
    @property
    def sweep_file(self) -> Path:
        return self.dir / SWEEP

    def read_sweep(self) -> dict | None:
        path = self.sweep_file
        if not path.is_file():
            return None
        fix = (
            f"restore it from a copy, or start the sweep anew under another --name (or after "
            f"removing {self.exp_dir})"
        )
        try:
            state = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(
                f"{path}: the sweep's state file is unreadable ({e}); {fix}"
            ) from None
        if (
            not isinstance(state, dict)
            or not isinstance(state.get("spec"), dict)
            or state.get("status") not in (RUNNING, INTERRUPTED, FINISHED)
        ):
            raise ConfigError(
                f"{path}: the sweep's state file is damaged (no spec and status in it); {fix}"
            )
        return state

    def write_sweep(self, spec_dict: dict, status: str, **extra: Any) -> None:
        state = {
            "spec": spec_dict,
            "spec_sha256": fingerprint(spec_dict),
            "status": status,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        write(self.sweep_file, yaml.safe_dump(state, sort_keys=False), f"sweep:{status}")

    # -- asha_rungs.yaml (written by sweep.runtime.stopping.asha.ResumableASHA) ----------------
    @property
    def asha_file(self) -> Path:
        return self.dir / ASHA

    # -- ended/<id>.json --------------------------------------------------------------------
    def _write_ended(self, trial_id: str, kind: str) -> None:
        (self.dir / ENDED).mkdir(parents=True, exist_ok=True)
        record = _plain(self.ended[trial_id].__dict__)
        write(self.dir / ENDED / f"{trial_id}.json", json.dumps(record), kind)

    def trial_ended(
        self, trial_id: str, result: dict | None, score: float | None, path: str | None
    ) -> None:
        """`trial_id` ended: completed with `result` (Tune's last result), or (None) failed.
        A failed trial that a retry completes is rewritten; a completed one never."""
        old = self.ended.get(trial_id)
        if old is not None and (result is None or old.completed):
            return
        self.ended[trial_id] = Ended(result is not None, _plain(result or {}), score, path)
        self._write_ended(trial_id, "ended")

    def trial_retained(self, trial_id: str, kept: bool) -> None:
        self.ended[trial_id].kept = kept
        self._write_ended(trial_id, "retained")
        if not self.ended[trial_id].removed:
            self._waiting.add(trial_id)

    def files_removed(self, trial_id: str) -> None:
        self.ended[trial_id].removed = True
        self._write_ended(trial_id, "removed")
        self._waiting.discard(trial_id)

    @property
    def files_waiting(self) -> bool:
        """Whether a retained trial's files wait for Tune's saved state (O(1): asked every
        Tune step)."""
        return bool(self._waiting)

    def final(self, trial_id: str) -> dict | None:
        """The last result of a trial that completed (None: it failed, or has not ended)."""
        record = self.ended.get(trial_id)
        return record.result if record is not None and record.completed else None

    def completed(self) -> set[str]:
        return {t for t, r in self.ended.items() if r.completed}

    def unretained(self) -> dict[str, Ended]:
        """Completed trials whose retention is not done (MLflow was away, or a kill)."""
        return {t: r for t, r in self.ended.items() if r.completed and r.kept is None}

    def unremoved(self) -> dict[str, Ended]:
        """Retained trials whose files wait for Tune's saved state to have them ended."""
        return {t: r for t, r in self.ended.items() if r.kept is not None and not r.removed}

    def forget(self, trial_ids: set[str]) -> None:
        for trial_id in trial_ids:
            (self.dir / ENDED / f"{trial_id}.json").unlink(missing_ok=True)
            self.ended.pop(trial_id, None)
            self._waiting.discard(trial_id)

    # -- kept.yaml (the top K; sweep.runtime.retention.Retention decides) ------------------
    def read_kept(self) -> tuple[dict[str, float], list[str]]:
        path = self.dir / KEPT
        if not path.is_file():
            return {}, []
        try:
            record = yaml.safe_load(path.read_text())
            kept = {str(k): float(v) for k, v in record["kept"].items()}
            return kept, [str(t) for t in record["evicting"]]
        except (ValueError, AttributeError, KeyError, TypeError, yaml.YAMLError) as e:
            raise ConfigError(
                f"{path} is damaged ({type(e).__name__}: {e}); delete it to start the top-K "
                "record afresh (checkpoints already uploaded stay)"
            ) from None

    def write_kept(self, kept: dict[str, float], evicting: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump({"kept": kept, "evicting": evicting}, sort_keys=True)
        write(self.dir / KEPT, text, "kept")

    # -- checks and the resume ------------------------------------------------------------
    def check(self) -> None:
        """The sweep's own records a resume reads besides Tune's, checked before Ray starts
        (the early-stopping rule checks its own: sweep.runtime.stopping); each error names
        its file."""
        self.read_sweep()
        self.read_kept()

    def retain(self, trial_id: str, score: float | None, retention: Any, store: Any) -> bool | None:
        """An ended trial's retention (sweep.runtime.retention.Retention.end_trial), recorded;
        None: MLflow did not take it (the record stays unretained, for a later try)."""
        kept = retention.end_trial(trial_id, score, store)
        if kept is not None:
            if trial_id not in self.ended:  # ended before the ledger recorded ends
                self.ended[trial_id] = Ended(True, {}, score, None)
            self.trial_retained(trial_id, kept)
        return kept

    def remove_files(self, trial_id: str, retention: Any, path: str | None) -> None:
        retention.remove_files(trial_id, path)
        if trial_id in self.ended:
            self.files_removed(trial_id)

    def reconcile(
        self,
        saved: dict[str, SavedTrial],
        retention: Any,
        store: Any,
    ) -> Reconciled:
        """At a resume, with Tune's saved trials (empty: Tune saved nothing, the sweep starts
        afresh): drop the records of trials Tune never saved, finish each ended trial's
        retention and file removal, delete pushed-out copies and unsaved trials' folders.
        Idempotent: a second call finds nothing left to do."""
        done = Reconciled()
        done.forgotten = sorted(set(self.ended) - set(saved))
        self.forget(set(done.forgotten))
        retention.forget(set(done.forgotten))  # a kill after its upload: out of the top K
        for trial in saved.values():
            if trial.status != "TERMINATED":
                continue
            record = self.ended.get(trial.trial_id)
            if record is not None and not record.completed:
                continue
            left = retention.has_files(trial.trial_id, trial.path)
            if record is None and not left:
                continue  # nothing of it is left to retain
            if record is None or record.kept is None:
                score = record.score if record is not None else trial.score
                if self.retain(trial.trial_id, score, retention, store) is None:
                    continue  # MLflow away: its files stay for the end of the sweep
                done.retained.append(trial.trial_id)
            if left or not self.ended[trial.trial_id].removed:
                self.remove_files(trial.trial_id, retention, trial.path)
                done.removed.append(trial.trial_id)
        done.evictions_left = retention.finish_evictions(store)
        done.orphans = retention.sweep_orphans(set(saved))
        return done


def completed_result(exp_dir: str | Path, trial_id: str) -> dict | None:
    """The final result the ledger holds for a trial that completed (read by the trial
    itself, in its worker); None if it did not complete or has no record."""
    path = ledger_dir(exp_dir) / ENDED / f"{trial_id}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record["result"] if record.get("completed") else None


def saved_trials(exp_dir: str | Path, metric: str, mode: str) -> dict[str, SavedTrial]:
    """Tune's newest saved experiment state of a sweep: trial id -> SavedTrial."""
    from ray import tune

    return {
        t.trial_id: SavedTrial(t.trial_id, t.status, t.path, trial_score(t, metric, mode))
        for t in tune.ExperimentAnalysis(str(exp_dir)).trials
    }


def trial_score(trial, metric: str, mode: str) -> float | None:
    """A Tune trial's best value of `metric` over its epochs; None for a diverged trial."""
    if (trial.last_result or {}).get("diverged"):
        return None
    return (getattr(trial, "metric_analysis", None) or {}).get(metric, {}).get(mode)


def _plain(value: Any) -> Any:
    """A Tune result as JSON: numpy scalars as numbers, anything else unknown as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def read_adaptive(path: Path) -> dict[str, Any]:
    """The adaptive rule's record (`early_stopping.yaml`), checked field by field: the
    completed curves, their costs, the decision and the dominance records. A damaged or
    edited file is a ConfigError naming it and what is wrong, read before Ray starts
    (the rule's check) and again where the rule restores itself (sweep.runtime.stopping.adaptive):
    -> {completed, costs, choice (RungChoice's fields, or None), pruner}."""

    def number(v: Any, what: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{what}: {v!r} is not a number")
        return float(v)

    def mapping(v: Any, what: str) -> dict:
        if not isinstance(v, dict):
            raise ValueError(f"{what}: expected a mapping, got {type(v).__name__}")
        return v

    try:
        state = mapping(yaml.safe_load(path.read_text()), "the file")
        if state.get("version") != ADAPTIVE_VERSION:
            raise ValueError(
                f"version {state.get('version')!r}, this code reads {ADAPTIVE_VERSION}"
            )
        completed = {}
        for t, curve in mapping(state.get("completed"), "completed").items():
            if not isinstance(curve, list):
                raise ValueError(f"completed.{t}: expected a list of values")
            completed[str(t)] = [number(v, f"completed.{t}") for v in curve]
        costs = {
            str(t): {
                str(k): number(v, f"costs.{t}.{k}") for k, v in mapping(c, f"costs.{t}").items()
            }
            for t, c in mapping(state.get("costs") or {}, "costs").items()
        }
        choice = None
        if state.get("choice") is not None:
            c = mapping(state["choice"], "choice")
            epoch = c.get("epoch")
            if epoch is not None and (
                isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1
            ):
                raise ValueError(f"choice.epoch: {epoch!r} is not an epoch (>= 1) or null")
            rows = c.get("rows") or []
            if not isinstance(rows, list):
                raise ValueError("choice.rows: expected a list")
            rows = [
                {
                    k: number(mapping(r, "choice.rows")[k], f"choice.rows.{k}")
                    for k in ("epoch", "rho", "low")
                }
                for r in rows
            ]
            dominating, again = c.get("min_dominating"), c.get("next_look")
            choice = {
                "epoch": epoch,
                "trials": int(number(c.get("trials"), "choice.trials")),
                "threshold": number(c.get("threshold"), "choice.threshold"),
                "rows": [{**r, "epoch": int(r["epoch"])} for r in rows],
                "min_dominating": (
                    None if dominating is None else int(number(dominating, "choice.min_dominating"))
                ),
                "next_look": None if again is None else int(number(again, "choice.next_look")),
            }
        pruner = state.get("pruner")
        if pruner is not None:
            pruner = mapping(pruner, "pruner")
            if not isinstance(pruner.get("rungs"), list):
                raise ValueError("pruner.rungs: expected a list of epochs")
            number(pruner.get("min_dominating"), "pruner.min_dominating")
            for r, trials in mapping(pruner.get("records") or {}, "pruner.records").items():
                for t, point in mapping(trials, f"pruner.records.{r}").items():
                    for k, v in mapping(point, f"pruner.records.{r}.{t}").items():
                        number(v, f"pruner.records.{r}.{t}.{k}")
    except (OSError, yaml.YAMLError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(
            f"{path}: the adaptive early-stopping record is damaged ({e}); restore the file, "
            "or remove it to resume without it (the rule then decides again from the trials "
            "that complete from now on)"
        ) from None
    return {"completed": completed, "costs": costs, "choice": choice, "pruner": pruner}
