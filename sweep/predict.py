"""Predict expressions with a model in MLflow: `nrfer.predict` with the model fetched first.

    python -m sweep.predict --model models:/nrfer-demo@champion --json face.png other.jpg
    python -m sweep.predict --model models:/nrfer-demo/1 --tracking-uri sqlite:///mlflow.db face.png

--model: models:/NAME@ALIAS (reproduce-best sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder as nrfer.predict takes. The store is
--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
"""

from __future__ import annotations

import os
from pathlib import Path

from nrfer.cli import run_command
from nrfer.commands import is_model_uri, predict_parser


def fetch_model(model: str, uri: str | None = None) -> Path:
    """A local path as it is; an MLflow model URI downloaded to a local folder."""
    if not is_model_uri(model):
        return Path(model)
    import mlflow

    from nrfer.errors import first_line
    from sweep.tracking.store import check_tracking_uri, tracking_uri

    # a server that is away: a few seconds, not MLflow's minutes of silent retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = check_tracking_uri(tracking_uri(uri), "--tracking-uri")
    try:  # the store named here only: MLflow's process-wide URIs stay as they were
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=model, tracking_uri=store, registry_uri=store
        )
        return Path(path)
    except Exception as e:  # MlflowException, connection errors
        raise ValueError(f"cannot fetch {model} from MLflow: {first_line(e, 300)}") from None


def parser():
    return predict_parser(__doc__, mlflow=True)


def main(argv: list[str] | None = None) -> int:
    def body(args) -> int:
        from nrfer.predict import predict_files  # torch: after parsing

        return predict_files(args, lambda m: fetch_model(m, args.tracking_uri))

    return run_command(parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
