"""Commands leave nothing in TMPDIR (`sweep --dry-run`, `study table`, `ui` started and
stopped; `evaluate` and `predict` of a models:/ URI: test_best.py), and `nrfer ui` stops
within 2 s of Ctrl+C, taking MLflow's server with it."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_study import fake_study

from helpers import REPO

NRFER = str(Path(sys.executable).parent / "nrfer")


def scratch_env(tmp_path: Path) -> tuple[dict, Path]:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["TMPDIR"] = str(scratch)
    return env, scratch


def test_dry_run_and_study_table_leave_nothing_in_tmpdir(tmp_path):
    env, scratch = scratch_env(tmp_path)
    fake_study(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for command in (
        [NRFER, "sweep", "--space", "demo", "--dry-run", "--storage", str(tmp_path / "s")],
        [NRFER, "study", "table", "--sweep", "fake", "--tracking-uri", uri],
        [NRFER, "study", "plan", "--sweep", "fake", "--tracking-uri", uri],
    ):
        p = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert p.returncode == 0, p.stderr[-2000:]
        assert list(scratch.iterdir()) == [], command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ui_stops_within_2_s_of_ctrl_c_and_leaves_nothing(tmp_path):
    env, scratch = scratch_env(tmp_path)
    fake_study(tmp_path)
    port = free_port()
    log = tmp_path / "ui.log"
    cmd = [NRFER, "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    cmd += ["--port", str(port), "--no-browser", "--sweep", "fake"]
    # a terminal's Ctrl+C goes to the foreground process group: this one
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while "MLflow UI:" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.3)
        assert answers(port), log.read_text()[-2000:]
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/#/experiments/" in text and "orderByKey" in text
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        took = time.time() - t0
        assert took < 2.0, took
        time.sleep(0.5)
        assert not answers(port)  # the server and its workers are gone too
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert list(scratch.iterdir()) == []


def test_mlflow_is_found_beside_the_interpreter_on_path_or_as_a_module(monkeypatch):
    import shutil

    from sweep.commands import ui

    assert ui.mlflow_command() == [str(Path(sys.executable).parent / "mlflow")]
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    assert ui.mlflow_command() == [sys.executable, "-m", "mlflow"]
    p = subprocess.run(
        [*ui.mlflow_command(), "--version"], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and "version" in p.stdout


def test_gitignore_keeps_the_stores_out_of_git():
    ignored = (REPO / ".gitignore").read_text().split()
    assert {"mlflow.db", "optuna.db", "mlflow-artifacts/"} <= set(ignored)


def test_ui_refuses_a_taken_port_and_sigterm_takes_the_server_with_it(tmp_path):
    """A port something else listens on is refused before MLflow starts (the other server's
    /health used to answer for it, and the link was printed for a UI that then died); a
    SIGTERM to `nrfer ui` alone (a service manager, `kill`) stops MLflow's server too."""
    env, _ = scratch_env(tmp_path)
    fake_study(tmp_path)
    port = free_port()
    cmd = [NRFER, "ui", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    cmd += ["--port", str(port), "--no-browser", "--sweep", "fake"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in p.stderr
    assert "MLflow UI:" not in p.stdout and "starting:" not in p.stdout
    log = tmp_path / "ui.log"
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while "MLflow UI:" not in log.read_text() and time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.3)
        assert answers(port)
        os.kill(proc.pid, signal.SIGTERM)  # the ui process only, not its group
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
        deadline = time.time() + 5
        while answers(port) and time.time() < deadline:
            time.sleep(0.2)
        assert not answers(port)  # MLflow's server and workers left with it
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
