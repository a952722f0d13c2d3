"""What a sweep keeps on disk, and for how long: bounded by the trials running, not by the
trials run.

- A running trial works in `<storage>/<sweep>/work/<trial_id>/` (its best.pt, previews,
  the last.pt it hands to Tune); Tune keeps its last two checkpoints (model + optimiser
  state) in the trial's folder. Both stay while the trial can still continue: running,
  interrupted (Ctrl+C, a killed driver) or errored (`--resume` retries it).
- When a trial ends (finished, stopped by the scheduler, diverged) its optimiser state can
  never be used again: its best.pt goes to its MLflow run if it is among the top K trials
  so far by the sweep's metric (`tracking.keep_checkpoints`, default 3, `all` for every
  trial), its run is tagged with which, and its Tune checkpoints and work folder are
  deleted once Tune's saved state has it as ended (Tune saves it every 2 s at most; a
  resume from an older state restores the trial from its checkpoint, see
  sweep.runtime.ledger). A trial pushed out of the top K by a better one loses its
  uploaded best.pt again. Its run keeps its config, curves and previews whatever happens.
- At the start of a `--resume` the driver sweeps what a killed driver left: it applies the
  retention to trials Tune has as ended, finishes the deletions of pushed-out best.pt
  files, and deletes the folders of trials Tune never saved (they run again under new ids).

The top K so far, and the pushed-out trials whose copy is not deleted yet, are kept in the
ledger's `kept.yaml` (sweep.runtime.ledger), each step written before the next, so a resumed
sweep goes on from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from sweep.compat.ray_tune import saved_state_file
from sweep.runtime.ledger import Ledger

WORK = "work"
KEPT_TAG = "nrfer.checkpoint"  # on each ended trial's run: kept / not kept, and why


def work_dir(exp_dir: str | Path, trial_id: str) -> Path:
    """A trial's working folder: the same for each attempt (a retry finds its best.pt)."""
    return Path(exp_dir) / WORK / trial_id


def remove_tune_checkpoints(trial_dir: str | Path | None) -> None:
    """Delete the `checkpoint_*` folders of an ended trial (model + optimiser state)."""
    if not trial_dir or not Path(trial_dir).is_dir():
        return
    for ckpt in Path(trial_dir).glob("checkpoint_*"):
        if ckpt.is_dir():
            shutil.rmtree(ckpt, ignore_errors=True)


class CheckpointStore(Protocol):
    """Where kept best.pt files go (the trials' MLflow runs); each call says whether it was
    done (False: MLflow is away, the retention tries again later)."""

    def upload(self, trial_id: str, best: Path) -> bool: ...  # best.pt to the trial's run

    def drop(self, trial_id: str) -> bool: ...  # delete it again (pushed out of the top K)

    def tag(self, trial_id: str, kept: bool) -> bool: ...  # say on the run which it is


class Retention:
    """The driver's record of the trials whose best.pt MLflow keeps: the top `keep` by the
    sweep's metric (`keep` None: all), and the trials pushed out whose uploaded best.pt is
    not deleted yet. Every step is written down before the next, so a driver killed (or an
    MLflow outage) between any two leaves a record the resume finishes from: a trial's
    files are deleted only after its run says whether its best.pt is kept."""

    def __init__(self, ledger: Ledger, keep: int | None, mode: str) -> None:
        self.ledger, self.exp_dir, self.keep, self.mode = ledger, ledger.exp_dir, keep, mode
        self.kept: dict[str, float]
        self.evicting: list[str]  # pushed out; their best.pt is still in MLflow
        self.kept, self.evicting = ledger.read_kept()

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _worst(self) -> str:
        key = min if self.mode == "max" else max
        return key(self.kept, key=lambda t: (self.kept[t], t))

    def _write(self) -> None:
        self.ledger.write_kept(self.kept, self.evicting)

    def decide(self, trial_id: str, score: float | None) -> tuple[bool, str | None]:
        """Whether `trial_id` (its best value of the metric, None: diverged or none) joins
        the kept set, and which kept trial it pushes out (None: none)."""
        if trial_id in self.kept:
            return True, None
        if score is None or score != score or self.keep == 0:
            return False, None
        if self.keep is None or len(self.kept) < self.keep:
            return True, None
        worst = self._worst()
        return (True, worst) if self._better(score, self.kept[worst]) else (False, None)

    def record(self, trial_id: str, score: float, evicted: str | None) -> None:
        self.kept[trial_id] = float(score)
        if evicted is not None:
            self.kept.pop(evicted, None)
            self.evicting.append(evicted)
        self._write()

    def forget(self, trial_ids: set[str]) -> None:
        """Trials Tune never saved (they run again under new ids, their runs deleted): out of
        the top K, so their places go to the trials that do count."""
        if trial_ids & set(self.kept):
            self.kept = {t: s for t, s in self.kept.items() if t not in trial_ids}
            self._write()

    def finish_evictions(self, store: CheckpointStore) -> int:
        """Delete the uploaded best.pt of each trial pushed out (a kill or an outage may have
        kept an earlier try from it). Returns how many are still to delete."""
        for trial_id in list(self.evicting):
            if store.drop(trial_id):
                self.evicting.remove(trial_id)
                self._write()
        return len(self.evicting)

    def end_trial(self, trial_id: str, score: float | None, store: CheckpointStore) -> bool | None:
        """A trial ended for good: its best.pt uploaded if it is in the top K (a trial it
        pushes out loses its copy), and its run tagged with which. Returns whether its
        best.pt is kept; None when MLflow did not take the upload or the tag (its files stay
        for a retry, which decides the same). Its files go with `remove_files`, once Tune's
        saved state has it as ended."""
        best = work_dir(self.exp_dir, trial_id) / "checkpoint" / "best.pt"
        keep, evicted = self.decide(trial_id, score)
        if keep and trial_id not in self.kept:
            if not best.is_file() or score is None:
                keep = False
            elif not store.upload(trial_id, best):
                return None
            else:
                self.record(trial_id, score, evicted)
        self.finish_evictions(store)
        if not store.tag(trial_id, keep):
            return None
        return keep

    def has_files(self, trial_id: str, trial_dir: str | Path | None) -> bool:
        """Whether an ended trial still has its work folder or Tune checkpoints."""
        return work_dir(self.exp_dir, trial_id).exists() or (
            bool(trial_dir) and any(Path(str(trial_dir)).glob("checkpoint_*"))
        )

    def remove_files(self, trial_id: str, trial_dir: str | Path | None) -> None:
        """An ended, retained trial's Tune checkpoints and work folder."""
        remove_tune_checkpoints(trial_dir)
        shutil.rmtree(work_dir(self.exp_dir, trial_id), ignore_errors=True)

    def sweep_orphans(self, known: set[str]) -> list[str]:
        """The work folders of trials Tune never saved (not in `known`: a killed driver
        started them after Tune's last saved state; they run again under new ids)."""
        root = self.exp_dir / WORK
        swept = []
        if root.is_dir():
            for folder in root.iterdir():
                if folder.name not in known:
                    shutil.rmtree(folder, ignore_errors=True)
                    swept.append(folder.name)
        return swept


def tune_state_time(exp_dir: str | Path) -> float:
    """The mtime of Tune's newest saved experiment state there (0.0: none yet): read again
    only when this changed."""
    path = saved_state_file(exp_dir)
    try:
        return path.stat().st_mtime if path is not None else 0.0
    except OSError:
        return 0.0
