"""Screenshots of the MLflow UI on a sweep, for the README (`make ui-shots`).

    python docs/ui_shots.py [--tracking-uri sqlite:///mlflow.db] [--sweep demo] [--out docs/ui]

Starts `mlflow ui` on the store (127.0.0.1, a free port), waits until it answers, and drives
headless Chromium (`apt-get install chromium`) over the DevTools protocol (docs/cdp.py) from
a FRESH profile with nothing pre-set (what a new user has): each page is opened by the link
`nrfer ui` prints (sweep.commands.ui.runs_link: the model-training view, the sweep's trials, best
first), gets --wait-s seconds to render, and screenshots are saved of:

- runs.png: the sweep's experiment, opened on its saved view: the trials, best first, their
  metric and searched values as columns;
- trial.png: the best trial's run page (description, dataset, params);
- trial_metrics.png: the best trial's metric charts (val_acc, losses, peak memory);
- trial_system.png: its system-metrics charts (MLflow's monitor);
- report.png: the sweep's interactive report (report/index.html) in MLflow's artifact viewer.

Look at each picture before committing it: the UI changes between MLflow versions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "docs"))
from cdp import Browser, free_port  # noqa: E402


def start_ui(uri: str, port: int, log: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PATH": f"{mlflow.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"mlflow ui did not answer within 90 s; see {log}")


def pages(client, sweep: str | None) -> dict[str, str]:
    """name -> URL path after '#'."""
    from sweep.tracking.sweep_run import find_sweep

    parent = find_sweep(client, sweep)
    exp_id, parent_id = parent.info.experiment_id, parent.info.run_id
    best = parent.data.tags.get("nrfer.best_trial_run_id")
    if not best:
        raise SystemExit(f"sweep {parent.info.run_name}: no best trial recorded (unfinished?)")
    from sweep.commands.ui import runs_link
    from sweep.tracking import INSTANCE
    from sweep.tracking.ui import view_key

    run = f"/experiments/{exp_id}/runs"
    view = "?workflowType=machine_learning"
    link = runs_link("", exp_id, view_key(parent.data.tags.get(INSTANCE) or "")).removeprefix("/#")
    urls = {
        "runs": link,
        "trial": f"{run}/{best}{view}",
        "trial_metrics": f"{run}/{best}/model-metrics{view}",
        "trial_system": f"{run}/{best}/system-metrics{view}",
        "report": f"{run}/{parent_id}/artifacts/report/index.html{view}",
    }
    return urls


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    ap.add_argument("--sweep", help="sweep name (default: the most recent sweep)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--size", default="1800,950", help="window size, WIDTH,HEIGHT")
    ap.add_argument("--wait-s", type=float, default=10, help="seconds each page gets to render")
    ap.add_argument("--only", nargs="*", help="names of the shots to take (default: all)")
    args = ap.parse_args()

    from mlflow.tracking import MlflowClient

    from sweep.tracking import tracking_uri

    uri = tracking_uri(args.tracking_uri)
    if shutil.which(args.chromium) is None:
        raise SystemExit(f"{args.chromium}: not found; install it (apt-get install chromium)")
    urls = pages(MlflowClient(uri), args.sweep)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"nrfer-ui-shots-{port}.log"
    proc = start_ui(uri, port, log)
    width, height = (int(v) for v in args.size.split(","))
    browser = Browser(args.chromium, width, height)
    try:
        base = f"http://127.0.0.1:{port}/#"
        steps = [("goto", base + "/"), ("wait", 3)]
        for name, path in urls.items():
            if args.only and name not in args.only:
                continue
            out = args.out / f"{name}.png"
            # about:blank between pages: each loads afresh
            steps += [("goto", "about:blank"), ("goto", base + path), ("wait", args.wait_s)]
            steps += [("shot", str(out))]
            print(f"{out}  <- {base}{path}")
        browser.run(steps)
    finally:
        browser.close()
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
