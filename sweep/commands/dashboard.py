"""`nrfer dashboard`: optuna-dashboard on the sweeps' Optuna studies (one study per sweep
name: optimisation history, parameter importance, slices, intermediate values). It binds to
127.0.0.1 unless told otherwise.

    nrfer dashboard                                   # the studies in ./optuna.db
    nrfer dashboard --optuna-storage sqlite:///runs/optuna.db --port 8081

It needs the `dashboard` extra: pip install 'nrfer-sweep[dashboard]' (or make dashboard).
Every sweep's report also holds these plots, offline: report/index.html on its parent run,
or `nrfer report --sweep NAME`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


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
    from sweep.commands.parsers import dashboard_parser

    return run_command(dashboard_parser(__doc__), serve_dashboard, argv)


if __name__ == "__main__":
    raise SystemExit(main())
