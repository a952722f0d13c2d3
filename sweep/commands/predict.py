"""`nrfer predict`: the expression of each face image, with a model in MLflow or on disk.

    nrfer predict --model models:/nrfer-demo@champion --json face.png other.jpg
    nrfer predict --model models:/nrfer-demo/1 --tracking-uri sqlite:///mlflow.db face.png
    nrfer predict --model runs/demo/checkpoint/best.pt faces/*.png
    nrfer predict --model models:/nrfer-demo@champion --annotate out.png photo.jpg

--model: models:/NAME@ALIAS (`nrfer best` sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder. Images of any size and colour are converted as
in training; a bad path or an undecodable image is an error for that image only. A photo
(larger than 128 px a side; --faces) is searched for faces (OpenCV's Haar cascade), each
aligned, cropped and predicted, with its box; --annotate draws them on the photo. The store is
--tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from nrfer.cli import run_command
from nrfer.parsers import is_model_uri, predict_parser


def fetch_model(model: str, uri: str | None = None) -> Path:
    """A local path as it is; an MLflow model URI downloaded from the store `uri` (its model
    registry too) into a temporary folder deleted when the command exits."""
    if not is_model_uri(model):
        return Path(model)
    if model.lower().startswith(("http://", "https://")):
        raise ValueError(
            f"{model}: a web address; give a local model file or folder, or an MLflow model URI "
            "(models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH) with --tracking-uri "
            "naming the store"
        )
    import mlflow

    from nrfer.errors import first_line
    from sweep.tracking.store import check_tracking_uri, tracking_uri

    # a server that is away: a few seconds, not MLflow's minutes of silent retries
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store = check_tracking_uri(tracking_uri(uri), "--tracking-uri")
    try:
        with store_uris(store):  # MLflow 3.17's registry_uri= alone does not reach it
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=model, tracking_uri=store, dst_path=str(scratch_folder())
            )
        return Path(path)
    except Exception as e:  # MlflowException, connection errors
        raise ValueError(f"cannot fetch {model} from MLflow: {first_line(e, 300)}") from None


@contextlib.contextmanager
def store_uris(store: str):
    """MLflow's process-wide tracking and registry URIs set to `store` for the block, then
    put back (a later reproduce-best in the same process registers where it was told)."""
    import mlflow

    # set_*_uri write these variables too; a URI set before (by them or by the user) is one
    had = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        yield
    finally:
        # None: back to the default (MLflow takes it; its hints say str only)
        mlflow.set_tracking_uri(had["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        mlflow.set_registry_uri(had["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for k, v in had.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_SCRATCH: list[Path] = []


def scratch_folder() -> Path:
    """A temporary folder for downloaded models, deleted when the process exits."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="nrfer-model-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _SCRATCH.append(folder)
    return _SCRATCH[0]


def parser():
    return predict_parser(__doc__, mlflow=True)


def main(argv: list[str] | None = None) -> int:
    def body(args) -> int:
        from nrfer.predict import predict_files  # torch: after parsing

        return predict_files(args, lambda m: fetch_model(m, args.tracking_uri))

    return run_command(parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
