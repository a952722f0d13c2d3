"""`nrfer evaluate`: a model (in MLflow or on disk) on a split of a dataset: accuracy, mean
class accuracy, macro-F1, per-class recall and calibration (ECE, NLL, vote TV), the
confusion matrix, the reliability diagram and the per-image predictions (--out).

    nrfer evaluate --model models:/nrfer-demo@champion --dataset rafdb --root data/RAF-DB
    nrfer evaluate --model models:/nrfer-demo/1 --tracking-uri sqlite:///mlflow.db --json
    nrfer evaluate --model runs/demo/checkpoint/best.pt --tta flip
    nrfer evaluate --model models:/nrfer-demo@champion --out eval/ \
        --degrade lowres:12,16,24 blur:1,2 jpeg:20,50 noise:0.05 occlude:0.25

--model: models:/NAME@ALIAS (`nrfer best` sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder. Without --dataset, the model's own dataset
(its config's data section) is evaluated on --split (default test). The store is
--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
--degrade also scores the faces degraded (lowres, blur, jpeg, noise, occlude at the
severities given; nrfer.degrade), a table relative to clean and, with --out,
degradations.csv and degradations.png.
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
