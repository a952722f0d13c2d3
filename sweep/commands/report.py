"""`nrfer report`: a sweep's interactive report, one offline HTML file: optimisation
history, parallel coordinates, learning curves with the early-stopped (pruned) trials marked,
parameter importance, slices, the leaderboard with each trial's MLflow run, a study's table.

    nrfer report --sweep demo --open                  # runs/report-demo/index.html, opened
    nrfer report --sweep demo --out /tmp/demo-report --tracking-uri sqlite:///mlflow.db

The same page is on the sweep's parent run (report/index.html), refreshed as trials end;
this command builds it from MLflow at any time, during the sweep too.
"""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

from nrfer.files import write_atomic


def run(args) -> int:
    from mlflow.tracking import MlflowClient

    from sweep.analysis.html_report import sweep_page
    from sweep.analysis.study import study_table, sweep_spec
    from sweep.analysis.study_tables import render
    from sweep.tracking import check_tracking_uri, tracking_uri
    from sweep.tracking.sweep_run import find_sweep

    uri = check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    client = MlflowClient(uri)
    parent = find_sweep(client, args.sweep)
    name = parent.data.tags.get("nrfer.sweep_id") or args.sweep or "sweep"
    with tempfile.TemporaryDirectory(prefix="nrfer-report-") as tmp:
        spec = sweep_spec(client, parent.info.run_id, Path(tmp))
    table = None
    if spec.get("searcher") == "grid":  # a study: its table with the intervals
        parsed, cells = study_table(client, parent)
        table = render(parsed, cells)["md"]
    out = Path(args.out or f"runs/report-{name}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    write_atomic(path, sweep_page(client, parent, spec, uri, table, args.ui_url))
    print(f"report: {path.resolve()} ({path.stat().st_size / 2**20:.1f} MiB, works offline)")
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from sweep.commands.parsers import report_parser

    return run_command(report_parser(__doc__), run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
