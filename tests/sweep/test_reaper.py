"""Ray's processes leave with a driver killed by SIGKILL (issue 41: DashboardAgent and
RuntimeEnvAgent stayed up, ignoring the SIGTERM the raylet sent as it died)."""

import os
import signal
import subprocess
import sys
import time

import psutil

from helpers import REPO

DRIVER = """
import time
from sweep.runtime.local_ray import init_ray
init_ray(num_cpus=1, verbose=0)
print("up", flush=True)
time.sleep(600)
"""


def test_a_killed_drivers_ray_processes_are_ended(tmp_path):
    env = dict(os.environ)  # Ray's own private temp folder (short: Unix socket paths)
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert driver.stdout.readline().strip() == "up"
        time.sleep(3)  # Ray's agents are up; the watchdog has listed them
        ray = [
            p
            for p in psutil.Process(driver.pid).children(recursive=True)
            if "sweep.runtime.reaper" not in " ".join(p.cmdline())
        ]
        names = " ".join(" ".join(p.cmdline()) for p in ray)
        assert "raylet" in names and "gcs_server" in names, names
        os.kill(driver.pid, signal.SIGKILL)  # the driver alone, as the OOM killer does
        driver.wait(timeout=10)
        deadline = time.time() + 20
        while time.time() < deadline and any(
            p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ray
        ):
            time.sleep(0.5)
        alive = [
            " ".join(p.cmdline())[:80]
            for p in ray
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
        assert alive == [], alive
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
