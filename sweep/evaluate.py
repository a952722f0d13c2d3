"""Evaluate a model in MLflow: `nrfer.evaluate` with the model fetched first.

    python -m sweep.evaluate --model models:/nrfer-demo@champion --dataset rafdb --root data/RAF-DB
    python -m sweep.evaluate --model models:/nrfer-demo/1 --tracking-uri sqlite:///mlflow.db --json

--model: models:/NAME@ALIAS (reproduce-best sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder as nrfer.evaluate takes. The store is
--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
"""

from __future__ import annotations

from nrfer.cli import run_command
from nrfer.evaluate import build_parser, run
from sweep.predict import fetch_model


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or a best.pt")
    parser.add_argument(
        "--tracking-uri", help="the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)"
    )
    parser.description = __doc__
    return run_command(
        parser, lambda args: run(args, lambda m: fetch_model(m, args.tracking_uri)), argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
