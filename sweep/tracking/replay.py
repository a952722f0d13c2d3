"""Metric records a trial kept on disk while MLflow was unreachable, uploaded later: by the
driver at the end of a sweep, or by hand: python -m sweep.tracking replay FILE --tracking-uri URI
"""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from nrfer.cli import run_command
from sweep.tracking.store import (
    check_tracking_uri,
    log_metrics,
    move_credentials_to_env,
    redact,
    tracking_uri,
)

RECORD_KEYS = ("run_id", "key", "value", "timestamp", "step")


def read_record(record: Path) -> dict[str, list[Metric]]:
    """A record file's metric values by run, or a ValueError naming the file and line."""
    if not record.is_file():
        raise ValueError(f"{record}: no such record file")
    by_run: dict[str, list[Metric]] = {}
    text = record.read_text(encoding="utf-8", errors="replace")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            missing = [k for k in RECORD_KEYS if k not in r]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            metric = Metric(str(r["key"]), float(r["value"]), int(r["timestamp"]), int(r["step"]))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(
                f"{record}: line {n}: not a metric record ({str(e)[:120]}); each line is a JSON "
                f"object with {', '.join(RECORD_KEYS)}"
            ) from None
        by_run.setdefault(str(r["run_id"]), []).append(metric)
    return by_run


def replay(record: Path, uri: str | None = None) -> int:
    """Upload a trial's local metric record (written while MLflow was unreachable)."""
    return replay_into(MlflowClient(tracking_uri(uri)), record)


def replay_into(client: MlflowClient, record: Path) -> int:
    """Upload `record` through `client` and remove it; -> the values uploaded. The values
    keep their timestamps, so a value MLflow already has is not added again (MLflow drops
    exact duplicates)."""
    uri = client.tracking_uri
    by_run = read_record(record)
    for run_id in by_run:
        try:
            client.get_run(run_id)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise  # unreachable, refused: the record stays for a later replay
            raise ValueError(
                f"{record}: run {run_id} is not in the store at {redact(tracking_uri(uri))} "
                "(replay into the store the sweep logged to)"
            ) from None
    for run_id, metrics in by_run.items():
        log_metrics(client, run_id, metrics)
    rows = sum(len(m) for m in by_run.values())
    record.unlink()
    return rows


def replay_records(folder: Path, uri: str) -> None:
    """Upload every record in `folder`; one still unreachable stays for a later replay."""
    for record in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            n = replay(record, uri)
            print(f"MLflow caught up: {n} metric values from {record.name}")
        except Exception as e:  # still unreachable: the record stays for a later replay
            print(
                f"warning: {record} not uploaded ({e}); "
                f"later: python -m sweep.tracking replay {record} --tracking-uri {redact(uri)}"
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
    return run_command(parser, _replay, argv)


def _replay(args) -> int:
    uri = move_credentials_to_env(
        check_tracking_uri(tracking_uri(args.tracking_uri), "--tracking-uri")
    )
    n = replay(args.record, uri)
    print(f"replayed {n} metric values from {args.record}")
    return 0
