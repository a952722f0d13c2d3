"""Ray's processes leave with the driver that started them, however it ends.

A local sweep starts Ray inside the driver (`sweep.runtime.local_ray.init_ray`): GCS, raylet,
and the raylet's agents and workers. A clean exit or Ctrl+C shuts them down; a SIGKILL of
the driver (the OOM killer, `kill -9`, a scheduler's hard limit) does not, and Ray 2.60's
DashboardAgent and RuntimeEnvAgent ignore the SIGTERM the raylet sends as it dies. This
watchdog, started beside the driver in a session of its own, keeps a list of the driver's
descendants while it lives; once the driver is gone it gives Ray `GRACE_S` to go by itself,
then SIGTERMs, and after `GRACE_S` more SIGKILLs, whatever on that list is still there (a
PID counts only with the start time it was seen with, so a reused PID is never touched).

    python -m sweep.runtime.reaper DRIVER_PID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
GRACE_S = 2.0


def watch(driver: int) -> list[int]:
    """Block while `driver` lives, then end what it left; returns the PIDs signalled."""
    import psutil

    me = os.getpid()
    seen: dict[int, float] = {}
    try:
        root = psutil.Process(driver)
    except psutil.NoSuchProcess:
        return []
    while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
        try:
            for p in root.children(recursive=True):
                if p.pid != me:
                    seen.setdefault(p.pid, p.create_time())
        except psutil.Error:
            pass
        time.sleep(POLL_S)
    time.sleep(GRACE_S)
    signalled = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = []
        for pid, started in seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    p.send_signal(sig)
                    left.append(pid)
            except psutil.Error:
                pass
        signalled += [pid for pid in left if pid not in signalled]
        if not left:
            break
        time.sleep(GRACE_S)
    return signalled


def start(driver: int | None = None) -> subprocess.Popen:
    """The watchdog for `driver` (default: this process), in a session of its own so the
    driver's process group being killed does not take it along."""
    return subprocess.Popen(
        [sys.executable, "-m", "sweep.runtime.reaper", str(driver or os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
