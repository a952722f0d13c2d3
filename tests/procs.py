"""Real processes for tests: free loopback ports, process groups, an `mlflow server`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log, env=None):
    # a session of its own: teardown kills exactly this process group, nothing broader
    return subprocess.Popen(
        cmd,
        stdout=open(log, "a"),
        stderr=subprocess.STDOUT,
        env=env or dict(os.environ),
        start_new_session=True,
    )


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(check, timeout, what, every=1.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(every)
    raise TimeoutError(what)


def mlflow_server(folder: Path, port: int, env=None):
    """A real MLflow tracking server on 127.0.0.1 (SQLite store, proxied artifacts); waits
    until it answers /health."""
    proc = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--workers",
            "1",
        ],
        folder / "mlflow.log",
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"{url}/health", timeout=2).status == 200,
            90,
            "mlflow server",
            every=0.5,
        )
    except TimeoutError:
        stop(proc)
        raise
    return proc
