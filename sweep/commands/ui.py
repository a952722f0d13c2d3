"""`nrfer ui`: the MLflow UI on the sweep's store, opened on the sweep's trials. It binds to
127.0.0.1 unless told otherwise (see the README before exposing it).

    nrfer ui                          # ./mlflow.db, the most recent sweep
    nrfer ui --sweep demo --port 5001 --tracking-uri sqlite:///runs/mlflow.db

MLflow 3.17 opens an experiment on its GenAI pages unless the URL (or the browser's saved
choice, localStorage `mlflow.workflowType`) says otherwise: the experiment-kind tag is not
read while that switch exists. The link printed here asks for the model-training view
(`workflowType=machine_learning`) and the runs table opened on the sweep's saved view
(`viewStateShareKey`, an experiment tag the driver writes): its trials, best first, the
metric and every searched value as columns, so a new browser lands on the values.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from nrfer.val_metrics import VAL_METRICS


def sweep_link(uri: str, sweep: str | None, base_url: str) -> str:
    """The link to sweep `sweep`'s trials (the most recent sweep when None) in store `uri`."""
    from mlflow.tracking import MlflowClient

    from sweep.analysis.study import sweep_spec
    from sweep.tracking import INSTANCE
    from sweep.tracking.sweep_run import find_sweep
    from sweep.tracking.ui import SHARED_VIEW, runs_link, view_key

    client = MlflowClient(uri)
    parent = find_sweep(client, sweep)
    experiment_id, instance = parent.info.experiment_id, parent.data.tags.get(INSTANCE)
    tags = client.get_experiment(experiment_id).tags
    if instance and SHARED_VIEW + view_key(instance) in tags:
        return runs_link(base_url, experiment_id, view_key(instance))
    try:
        with tempfile.TemporaryDirectory(prefix="nrfer-ui-") as tmp:
            metric = sweep_spec(client, parent.info.run_id, Path(tmp)).get("metric", "val_acc")
    except Exception:  # a parent without its spec: the default metric
        metric = "val_acc"
    order = "best_val_acc" if metric == "val_acc" else metric
    return runs_link(
        base_url,
        experiment_id,
        instance=instance,
        order_by=order,
        ascending=metric in VAL_METRICS and VAL_METRICS[metric].sense == "min",
    )


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"mlflow ui did not answer at {url} within {timeout_s:.0f} s")


def serve_ui(args) -> int:
    from sweep.tracking import check_tracking_uri, tracking_uri

    uri = check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    if uri.startswith(("http://", "https://")):  # a tracking server is its own UI
        print(f"MLflow UI: {sweep_link(uri, args.sweep, uri)}")
        return 0
    base = f"http://{args.host}:{args.port}"
    link = sweep_link(uri, args.sweep, base)  # a missing sweep is said before a server starts
    check_port_free(args.host, args.port)  # else another server's /health would answer for it
    from sweep.tracking.store import ensure_store

    ensure_store(uri)  # a new store: created under its lock before MLflow's server opens it
    cmd = [*mlflow_command(), "ui", "--backend-store-uri", uri, "--host", args.host]
    cmd += ["--port", str(args.port)]
    print(f"starting: {' '.join(cmd)}")
    # its own process group: Ctrl+C reaches this process only, which then stops the server
    # and its workers at once (MLflow's own graceful shutdown takes 10-20 s)
    proc = subprocess.Popen(cmd, start_new_session=True)

    def terminated(signum: int, _frame) -> None:  # SIGTERM / SIGHUP: the server goes too
        stop_group(proc)
        sys.stdout.flush()
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminated)
    try:
        wait_for(base, proc)
        print(f"MLflow UI: {link}\n(Ctrl+C stops it)")
        if not args.no_browser and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
            import webbrowser

            webbrowser.open(link)
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl+C: the server goes at once, and so does this process: the interpreter's own
        # shutdown after MLflow's imports takes seconds more, with nothing left to save
        stop_group(proc)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    finally:
        stop_group(proc)


def check_port_free(host: str, port: int) -> None:
    """A ValueError naming --port when something already listens on host:port."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ValueError(
                f"--port {port}: {host}:{port} is already in use ({e.strerror}); another "
                f"server (an earlier `nrfer ui`?) listens there. Stop it, or give another "
                f"--port, e.g. --port {free_port(host)}"
            ) from None


def free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def mlflow_command() -> list[str]:
    """MLflow's command line: the `mlflow` script beside this interpreter, else on PATH,
    else `python -m mlflow` (an environment whose scripts folder is not on PATH)."""
    beside = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def stop_group(proc: subprocess.Popen, grace_s: float = 0.5) -> None:
    """Stop a process started in its own session and everything it started: SIGTERM to
    the group, then SIGKILL after `grace_s`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            if sig == signal.SIGTERM:  # the leader is gone; its workers may not be
                os.killpg(proc.pid, signal.SIGKILL)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands.parsers import ui_parser

    return run_command(ui_parser(__doc__), serve_ui, argv)


if __name__ == "__main__":
    raise SystemExit(main())
