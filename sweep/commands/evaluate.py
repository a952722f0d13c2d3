"""Evaluate a model in MLflow: `nrfer.evaluate` with the model fetched first.

    python -m sweep.commands.evaluate --model models:/nrfer-demo@champion --dataset rafdb --root data/RAF-DB
    python -m sweep.commands.evaluate --model models:/nrfer-demo/1 --tracking-uri sqlite:///mlflow.db --json

--model: models:/NAME@ALIAS (reproduce-best sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder as nrfer.evaluate takes. The store is
--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
"""

from __future__ import annotations

from nrfer.cli import run_command
from nrfer.parsers import evaluate_parser


def parser():
    return evaluate_parser(__doc__, mlflow=True)


def main(argv: list[str] | None = None) -> int:
    def body(args) -> int:
        from nrfer.evaluate import run  # torch: after parsing
        from sweep.commands.predict import fetch_model

        return run(args, lambda m: fetch_model(m, args.tracking_uri))

    return run_command(parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
