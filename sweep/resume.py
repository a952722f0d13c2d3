"""What a sweep was started with, and whether `--resume` may continue it.

`nrfer_sweep.yaml` beside Tune's files holds the resolved space (with its sha256) and the
sweep's status. `--resume` with another space, `num_samples` or data is refused with the
keys that changed, unless forced (then the sweep continues as it was started); `--resume`
of a finished sweep says so and touches nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path

import yaml
from ray import tune

from nrfer.config import ConfigError, config_diff, fingerprint
from nrfer.files import write_atomic

SWEEP_STATE = "nrfer_sweep.yaml"  # not .json: Tune copies those back over newer ones
RUNNING, INTERRUPTED, FINISHED = "RUNNING", "INTERRUPTED", "FINISHED"


class SweepFinished(Exception):
    """`--resume` of a sweep that already finished: nothing to do (not an error)."""


def new_instance() -> str:
    """A new sweep instance id (the parent run and every trial run carry it)."""
    return uuid.uuid4().hex


class SweepLock:
    """One driver per sweep (name + storage) at a time: an exclusive `flock` on
    `<storage>/.<name>.lock`, held for the driver's whole life. The kernel drops it when the
    holder dies (however it dies), so a crash leaves no stale lock; the file's text names
    the holder (pid, host, start time) for the refusal."""

    def __init__(self, storage: Path, name: str) -> None:
        self.path = Path(storage) / f".{name}.lock"
        self.fd: int | None = None

    def __enter__(self) -> SweepLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"storage path {self.path.parent} is not writable: {e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"sweep {self.path.name[1:-5]!r} under {self.path.parent} is in use by "
                f"{holder}; wait for it to end (or stop it), or give this one another --name "
                "or --storage"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None


def read_state(exp_dir: Path) -> dict | None:
    path = Path(exp_dir) / SWEEP_STATE
    if not path.is_file():
        return None
    fix = (
        f"restore it from a copy, or start the sweep anew under another --name (or after "
        f"removing {exp_dir})"
    )
    try:
        state = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: the sweep's state file is unreadable ({e}); {fix}") from None
    if (
        not isinstance(state, dict)
        or not isinstance(state.get("spec"), dict)
        or state.get("status") not in (RUNNING, INTERRUPTED, FINISHED)
    ):
        raise ConfigError(
            f"{path}: the sweep's state file is damaged (no spec and status in it); {fix}"
        )
    return state


def write_state(exp_dir: Path, spec_dict: dict, status: str, **extra) -> None:
    """Atomically (a killed driver leaves the old file or the new one, never half)."""
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    state = {
        "spec": spec_dict,
        "spec_sha256": fingerprint(spec_dict),
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    write_atomic(exp_dir / SWEEP_STATE, yaml.safe_dump(state, sort_keys=False))


def prepare(exp_dir: Path, spec_dict: dict, resume: bool, force: bool = False) -> tuple[bool, dict]:
    """Decide how to start: returns (restore Tune's state?, the spec dict to run with).

    Raises ConfigError for a name that is taken (no --resume), nothing to resume, or a
    changed space; SweepFinished when a finished sweep is resumed."""
    exp_dir = Path(exp_dir)
    state = read_state(exp_dir)
    restorable = tune.Tuner.can_restore(str(exp_dir)) and any(
        exp_dir.glob("experiment_state-*.json")
    )
    name, where = exp_dir.name, exp_dir.parent
    if not resume:
        if exp_dir.exists() and (state is not None or restorable):
            raise ConfigError(
                f"a sweep named {name!r} already exists under {where}; "
                "continue it with --resume or pick another --name"
            )
        return False, spec_dict
    if state is None and not restorable:
        raise ConfigError(f"--resume: no sweep named {name!r} to resume under {where}")
    if state is not None:
        changed = config_diff(state["spec"], spec_dict)
        if changed:
            listing = "; ".join(changed[:20])
            if not force:
                raise ConfigError(
                    f"--resume: sweep {name!r} was started with another space ({listing}). "
                    "Resume with the file and options it was started with, pick another "
                    "--name for a new sweep, or pass --force-resume to continue it as it was "
                    "started (the changes are ignored)"
                )
            print(f"warning: --force-resume: continuing {name!r} as started; ignored: {listing}")
        if state["status"] == FINISHED:
            raise SweepFinished(
                f"sweep {name!r} already finished ({state.get('num_trials', '?')} trials, "
                f"MLflow parent run {state.get('parent_run_id', '?')}); nothing to resume"
            )
        spec_dict = state["spec"]
    # killed before Tune saved any state: nothing ran yet, so start it afresh
    return restorable, spec_dict


class EndedTrials:
    """The trials Tune ended (completed, stopped early, failed), one small file each in
    `nrfer_ended/` beside Tune's state, written by the driver's callback the moment Tune
    ends a trial: what "unfinished" is counted from (so the count does not depend on the
    MLflow store: a deleted mlflow.db made it never reach 0), and a completed trial's final
    result. Tune saves its own state every few seconds, so a driver killed just after a
    trial completed leaves Tune thinking it still runs: the resume runs it again, its
    trainable returns at once (`completed`) and the driver gives it this final result back
    (TrialStatusCallback.on_trial_complete) instead of training it on."""

    DIR = "nrfer_ended"
    OLD_FILE = "nrfer_ended.yaml"  # a list of ids, from before the folder

    def __init__(self, exp_dir: Path) -> None:
        self.dir = Path(exp_dir) / self.DIR
        self.ids: set[str] = {p.stem for p in self.dir.glob("*.json")}
        old = Path(exp_dir) / self.OLD_FILE
        if old.is_file():  # their results are unknown; each counts as completed
            loaded = yaml.safe_load(old.read_text())
            for trial_id in loaded if isinstance(loaded, list) else []:
                if str(trial_id) not in self.ids:
                    self.add(str(trial_id), {})
            old.unlink()

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def recorded(self) -> bool:
        """Whether this sweep has the record at all (one started before it has not)."""
        return self.dir.is_dir()

    def add(self, trial_id: str, result: dict | None = None) -> None:
        """`trial_id` ended: completed with `result` (Tune's last result), or (None) failed.
        A failed trial that a retry completes is rewritten."""
        if trial_id in self.ids and (result is None or self.final(trial_id) is not None):
            return
        record = {"completed": result is not None, "result": _plain(result or {})}
        self.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.dir / f"{trial_id}.json", json.dumps(record))
        self.ids.add(trial_id)

    def final(self, trial_id: str) -> dict | None:
        """The last result of a trial that completed (None: it failed, or has not ended)."""
        return completed_result(self.dir.parent, trial_id)

    def completed(self) -> set[str]:
        """The trials recorded as completed (not failed)."""
        return {t for t in self.ids if self.final(t) is not None}

    def keep_only(self, known: set[str]) -> None:
        for trial_id in self.ids - known:
            (self.dir / f"{trial_id}.json").unlink(missing_ok=True)
        self.ids &= known


def completed_result(exp_dir: str | Path, trial_id: str) -> dict | None:
    """The final result EndedTrials recorded for a trial that completed; None if it did
    not (no record, a failure, or a record a kill cut short)."""
    path = Path(exp_dir) / EndedTrials.DIR / f"{trial_id}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record["result"] if record.get("completed") else None


def _plain(value):
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


def check_resume_files(exp_dir: Path, early_stopping: str) -> None:
    """The files a resume reads besides Tune's own, checked before Ray starts: ASHA's rung
    records must be a mapping of brackets of rungs, else an error naming the file."""
    from sweep.scheduler import STATE_FILE

    path = Path(exp_dir) / STATE_FILE
    if early_stopping != "asha" or not path.exists():
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


def tune_trial_ids(exp_dir: Path) -> set[str]:
    """The ids of the trials in Tune's saved state of a sweep."""
    return {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}
