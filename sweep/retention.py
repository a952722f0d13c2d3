"""What a sweep keeps on disk, and for how long: bounded by the trials running, not by the
trials run.

- A running trial works in `<storage>/<sweep>/work/<trial_id>/` (its best.pt, previews,
  the last.pt it hands to Tune); Tune keeps its last two checkpoints (model + optimiser
  state) in the trial's folder. Both stay while the trial can still continue: running,
  interrupted (Ctrl+C, a killed driver) or errored (`--resume` retries it).
- When a trial ends (finished, stopped by the scheduler, diverged) its optimiser state can
  never be used again: its Tune checkpoints and its work folder are deleted, after its
  best.pt went to its MLflow run if it is among the top K trials so far by the sweep's
  metric (`tracking.keep_checkpoints`, default 3, `all` for every trial). A trial pushed
  out of the top K by a better one loses its uploaded best.pt again. Its run keeps its
  config, curves and previews whatever happens.
- At the start of a `--resume` the driver sweeps what a killed driver left: it applies the
  retention to trials Tune has as ended, and deletes the folders of trials Tune never
  saved (they run again under new ids).

The top K so far is kept in `<storage>/<sweep>/nrfer_kept_checkpoints.json`, so a resumed
sweep goes on from it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from nrfer.files import write_atomic

WORK = "work"
KEPT_FILE = "nrfer_kept_checkpoints.json"
KEPT_TAG = "nrfer.checkpoint"  # on each ended trial's run: kept / not kept, and why


def trial_score(trial, metric: str, mode: str) -> float | None:
    """A Tune trial's best value of `metric` over its epochs; None for a diverged trial."""
    if (trial.last_result or {}).get("diverged"):
        return None
    return (getattr(trial, "metric_analysis", None) or {}).get(metric, {}).get(mode)


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


class Retention:
    """The driver's record of the trials whose best.pt MLflow keeps: the top `keep` by the
    sweep's metric (`keep` None: all)."""

    def __init__(self, exp_dir: str | Path, keep: int | None, mode: str) -> None:
        self.exp_dir, self.keep, self.mode = Path(exp_dir), keep, mode
        self.path = self.exp_dir / KEPT_FILE
        self.kept: dict[str, float] = {}
        if self.path.is_file():
            try:
                self.kept = {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
            except (ValueError, AttributeError) as e:
                raise ValueError(
                    f"{self.path} is damaged ({e}); delete it to start the top-K record afresh "
                    "(checkpoints already uploaded stay)"
                ) from None

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.mode == "max" else a < b

    def _worst(self) -> str:
        key = min if self.mode == "max" else max
        return key(self.kept, key=lambda t: (self.kept[t], t))

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
        self.kept.pop(evicted, None)
        write_atomic(self.path, json.dumps(self.kept, indent=1, sort_keys=True))

    def end_trial(
        self,
        trial_id: str,
        score: float | None,
        trial_dir: str | Path | None,
        upload: Callable[[Path], bool],
        unupload: Callable[[str], None],
    ) -> bool | None:
        """A trial ended for good: its best.pt uploaded if it is in the top K (`upload`
        returns whether MLflow took it; a trial pushed out loses its copy through
        `unupload`), then its Tune checkpoints and work folder deleted. Returns whether its
        best.pt is kept; None when the upload failed (everything stays for a retry)."""
        work = work_dir(self.exp_dir, trial_id)
        best = work / "checkpoint" / "best.pt"
        keep, evicted = self.decide(trial_id, score)
        if keep and trial_id not in self.kept:
            if not best.is_file():
                keep = False
            elif not upload(best):
                return None
            else:
                self.record(trial_id, score, evicted)
                if evicted is not None:
                    unupload(evicted)
        remove_tune_checkpoints(trial_dir)
        shutil.rmtree(work, ignore_errors=True)
        return keep

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
