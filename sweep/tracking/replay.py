"""Metric records a trial kept on disk while MLflow was unreachable, uploaded later: by the
driver at the end of a sweep, or by hand: python -m sweep.tracking replay FILE --tracking-uri URI
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sweep.tracking.store import log_metrics, tracking_uri


def replay(record: Path, uri: str | None = None) -> int:
    """Upload a trial's local metric record (written while MLflow was unreachable)."""
    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    client = MlflowClient(tracking_uri(uri))
    by_run: dict[str, list[Metric]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(
            Metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"]))
        )
    for run_id, metrics in by_run.items():
        log_metrics(client, run_id, metrics)
    record.unlink()
    return len(rows)


def replay_records(folder: Path, uri: str) -> None:
    """Upload every record in `folder`; one still unreachable stays for a later replay."""
    for record in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            n = replay(record, uri)
            print(f"MLflow caught up: {n} metric values from {record.name}")
        except Exception as e:  # still unreachable: the record stays for a later replay
            print(
                f"warning: {record} not uploaded ({e}); "
                f"later: python -m sweep.tracking replay {record} --tracking-uri {uri}"
            )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sweep.tracking",
        description="Upload a trial's local metric record, written while MLflow was away.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("replay", help="log the metrics in a record file, then delete it")
    rp.add_argument("record", type=Path)
    rp.add_argument("--tracking-uri")
    args = parser.parse_args(argv)
    n = replay(args.record, args.tracking_uri)
    print(f"replayed {n} metric values from {args.record}")
    return 0
