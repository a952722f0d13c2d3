"""`nrfer ui`: the MLflow UI on the sweep's store, opened on the sweep's trials; and
`nrfer dashboard`: optuna-dashboard on the sweeps' studies. Both bind to 127.0.0.1 unless
told otherwise (see the README before exposing them).

    nrfer ui                          # ./mlflow.db, the most recent sweep
    nrfer ui --sweep demo --port 5001 --tracking-uri sqlite:///runs/mlflow.db

MLflow 3.x opens an experiment on its GenAI pages unless the URL (or the browser's saved
choice) says otherwise; the link printed here asks for the model-training view
(`workflowType=machine_learning`), the runs table (`compareRunsMode=TABLE`) filtered to
the sweep's trials and sorted by its metric, so a new browser lands on the trials.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def runs_link(
    base_url: str,
    experiment_id: str,
    instance: str | None = None,
    order_by: str = "best_val_acc",
    ascending: bool = False,
) -> str:
    """The experiment's runs table in the model-training view: the sweep's trials only
    (its instance), best first."""
    trials = "tags.`nrfer.role` = 'trial'"
    if instance:
        trials += f" and tags.`nrfer.sweep_instance` = '{instance}'"
    query = {
        "workflowType": "machine_learning",
        "compareRunsMode": "TABLE",
        "searchFilter": trials,
        "orderByKey": f"metrics.`{order_by}`",
        "orderByAsc": str(ascending).lower(),
    }
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


def sweep_link(uri: str, sweep: str | None, base_url: str) -> str:
    """The link to sweep `sweep`'s trials (the most recent sweep when None) in store `uri`."""
    from mlflow.tracking import MlflowClient

    from sweep.reproduce import find_sweep
    from sweep.study import sweep_spec
    from sweep.tracking import INSTANCE

    client = MlflowClient(uri)
    parent = find_sweep(client, sweep)
    try:
        metric = sweep_spec(client, parent.info.run_id).get("metric", "val_acc")
    except Exception:  # a parent without its spec: the default metric
        metric = "val_acc"
    order = "best_val_acc" if metric == "val_acc" else metric
    return runs_link(
        base_url,
        parent.info.experiment_id,
        parent.data.tags.get(INSTANCE),
        order,
        ascending=metric == "val_loss",
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
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    cmd = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    print(f"starting: {' '.join(cmd)}")
    proc = subprocess.Popen(cmd)
    try:
        wait_for(base, proc)
        print(f"MLflow UI: {link}\n(Ctrl+C stops it)")
        if not args.no_browser and (os.environ.get("DISPLAY") or sys.platform == "darwin"):
            import webbrowser

            webbrowser.open(link)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)


def serve_dashboard(args) -> int:
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    if exe is None:
        raise ValueError(
            "optuna-dashboard is not installed: pip install 'nrfer-sweep[dashboard]' "
            "(or make dashboard)"
        )
    cmd = [exe, args.optuna_storage, "--host", args.host, "--port", str(args.port)]
    print(f"optuna-dashboard: http://{args.host}:{args.port}  ({' '.join(cmd)})")
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands import ui_parser

    return run_command(ui_parser(__doc__), serve_ui, argv)


def dashboard(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands import dashboard_parser

    return run_command(dashboard_parser(__doc__), serve_dashboard, argv)


if __name__ == "__main__":
    raise SystemExit(main())
