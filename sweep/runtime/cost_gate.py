"""A trial's cost measured alone on its device: while it times its model, no other trial
of the sweep trains there.

Latency timed while other trials train on the same CPU or GPU is their noise, not the model's
(issue 41: 48 and 64 px inputs both about 61 ms, resnet14t faster than resnet10t). Each
trial of a sweep with a cost section holds its device's *busy* lock shared while it trains
an epoch; a measurement takes it exclusive, so it waits for the epochs in flight to end (at
most one epoch of each other trial) and no epoch starts until it is done. A *gate* lock in
front keeps measurements from starving: a trainer passes the gate (shared, for an instant)
before it takes the busy lock, a measurement holds the gate exclusive while it waits.

Locks are `flock`s on files in a node-local folder, one pair per sweep instance and device:
a process that dies releases them, and trials on other nodes or devices do not wait. The
load on the machine during the timing (CPU busy %, load average) is recorded beside it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def lock_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / f"nrfer-cost-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


class DeviceGate:
    """The two locks of one sweep instance on one device (see the module's text)."""

    def __init__(self, instance: str, device: str, folder: Path | None = None) -> None:
        base = (folder or lock_dir()) / f"{instance}-{device.replace(':', '_')}"
        self._gate: IO = open(f"{base}.gate", "a+")  # noqa: SIM115 - held across epochs
        self._busy: IO = open(f"{base}.busy", "a+")  # noqa: SIM115
        self.training = False

    def hold(self) -> None:
        """Before an epoch: pass the gate, then hold the device shared."""
        if self.training:
            return
        fcntl.flock(self._gate, fcntl.LOCK_SH)
        try:
            fcntl.flock(self._busy, fcntl.LOCK_SH)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self.training = True

    def release(self) -> None:
        """After an epoch (before Tune may stop the trial without returning)."""
        if self.training:
            fcntl.flock(self._busy, fcntl.LOCK_UN)
            self.training = False

    @contextmanager
    def alone(self) -> Iterator[float]:
        """The device to itself: yields how long it waited for the epochs in flight, s."""
        self.release()
        t0 = time.monotonic()
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._busy, fcntl.LOCK_EX)
            try:
                yield time.monotonic() - t0
            finally:
                fcntl.flock(self._busy, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        self._gate.close()
        self._busy.close()


def remove_gates(instance: str, folder: Path | None = None) -> int:
    """Delete a sweep instance's lock files on this node (at the sweep's end, when no trial
    of it holds them): they would otherwise pile up, a pair per sweep and device. -> how
    many. (Trials on other nodes leave their pair in that node's temp folder.)"""
    removed = 0
    for path in (folder or lock_dir()).glob(f"{instance}-*"):
        if path.suffix in (".gate", ".busy"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class Load:
    """The machine's load over a block: CPU busy % (all cores) and the 1-minute load average."""

    def __enter__(self) -> Load:
        import psutil

        psutil.cpu_percent(None)  # starts the interval
        self.cpu_percent = 0.0
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        self.cpu_percent = float(psutil.cpu_percent(None))
        self.load_average = float(os.getloadavg()[0])

    def to_dict(self, waited_s: float) -> dict:
        return {
            "cpu_busy_percent": round(self.cpu_percent, 1),
            "load_average_1m": round(self.load_average, 2),
            "waited_for_other_trials_s": round(waited_s, 2),
            "other_trials_training": 0,  # by the gate: none on this device
        }
