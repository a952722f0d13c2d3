"""Whether a sweep may start, or `--resume` continue it, and the lock that keeps it one driver.

The ledger's `sweep.yaml` (sweep.runtime.ledger) holds the resolved space (with its sha256)
and the sweep's status. `--resume` with another space, `num_samples` or data is refused with the
keys that changed, unless forced (then the sweep continues as it was started); `--resume`
of a finished sweep says so and touches nothing.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import uuid
from pathlib import Path

from ray import tune

from nrfer.config import ConfigError, config_diff
from sweep.runtime.ledger import FINISHED, Ledger


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


def prepare(
    ledger: Ledger, spec_dict: dict, resume: bool, force: bool = False
) -> tuple[bool, dict]:
    """Decide how to start: returns (restore Tune's state?, the spec dict to run with).

    Raises ConfigError for a name that is taken (no --resume), nothing to resume, or a
    changed space; SweepFinished when a finished sweep is resumed."""
    exp_dir = ledger.exp_dir
    state = ledger.read_sweep()
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
