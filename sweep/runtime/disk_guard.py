"""Stop a sweep before its disks fill: a Tune callback on the driver that, after each
trial result, looks at the free space of the sweep's storage folder and the SQLite store's
folder; under STOP_BELOW it says which and how much, and interrupts the sweep as Ctrl+C
does, while Tune can still save its state: every open run is closed as interrupted and
`--resume` continues after space is freed. A trial that hits a full disk anyway (another
process filled it) fails with nrfer's DiskFull, which stops the sweep the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from ray import tune

STOP_BELOW = 64 * 2**20  # the preflight asks 200 MiB to start; this is the floor mid-sweep
DISK_FULL = "no space left to write"  # nrfer.files.disk_full's words, in a trial's error


class DiskGuard(tune.Callback):
    def __init__(self, folders: dict[str, Path], every_s: float = 1.0) -> None:
        self.folders = folders  # what it is ("storage", "the MLflow store") -> folder
        self.every_s = every_s
        self.last = 0.0
        self.reason: str | None = None

    def low(self) -> str | None:
        """Which folder is under STOP_BELOW, as a line; None when all have room."""
        for what, folder in self.folders.items():
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                continue
            if free < STOP_BELOW:
                return (
                    f"{what} {folder} has {free / 2**20:,.1f} MiB free (under "
                    f"{STOP_BELOW / 2**20:.0f} MiB): the sweep stops here; free space there, "
                    "then continue with --resume"
                )
        return None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            print(f"\nerror: {reason}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # Tune's own interrupt: state saved, exit 3

    def on_trial_result(self, iteration, trials, trial, result, **info):
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            if reason := self.low():
                self.stop(reason)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check_error(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._check_error(trial)

    def _check_error(self, trial) -> None:
        path = Path(trial.error_file) if getattr(trial, "error_file", None) else None
        try:
            text = path.read_text(errors="replace") if path and path.is_file() else ""
        except OSError:
            text = ""
        if DISK_FULL in text:
            line = next(x for x in text.splitlines() if DISK_FULL in x)
            self.stop(DISK_FULL + line.split(DISK_FULL, 1)[1].rstrip())
        elif reason := self.low():
            self.stop(reason)
