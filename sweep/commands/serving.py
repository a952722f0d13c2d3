"""The registered model: an MLflow pyfunc around nrfer.predict.Predictor (preprocessing included).

Two kinds of input, so the signature leaves the input schema open:
- faces: a tensor of grayscale faces [N, H, W] with values 0..255, any H and W (48x48 FER+
  faces, or larger crops, resized as in training): one output row per face with the
  probability of each class and the top `label`;
- photos: a DataFrame with a `photo` column of image files (PNG, JPEG, ...) as base64 text
  or bytes (`{"dataframe_split": {"columns": ["photo"], "data": [["<base64>"]]}}`), each
  searched for faces as `nrfer predict` does (nrfer.faces): one row per face found, with
  `photo` (the input row), `face`, its box `x`, `y`, `w`, `h`, the probabilities and
  `label`; a photo without a face gives one row with face -1, an empty label and no
  probabilities.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec

from nrfer.checkpoint import CheckpointError, load_checkpoint
from nrfer.predict import Predictor

MODEL_CODE = Path(__file__).with_name("serving_model.py")


MAX_REQUEST_ENV = "NRFER_SERVE_MAX_IMAGES"
MAX_REQUEST = 4096  # faces per request, default; predictions run 64 at a time


def max_request() -> int:
    """The most faces one request may hold ($NRFER_SERVE_MAX_IMAGES, default 4096)."""
    return int(os.environ.get(MAX_REQUEST_ENV, MAX_REQUEST))


PHOTO = "photo"  # the input column of encoded photos


def decode_photo(value, row: int) -> np.ndarray:
    """An encoded image (bytes, or base64 text) as uint8 RGB."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        raw = value if isinstance(value, bytes | bytearray) else base64.b64decode(value)
        with Image.open(io.BytesIO(raw)) as im:
            return np.asarray(im.convert("RGB"))
    except (binascii.Error, TypeError, ValueError, UnidentifiedImageError, OSError) as e:
        raise ValueError(
            f"photo {row}: not an image file as base64 text or bytes ({type(e).__name__}: "
            f"{str(e)[:100]})"
        ) from None


class FERPyfunc(PythonModel):
    def load_context(self, context) -> None:
        self.predictor = Predictor.from_path(
            context.artifacts["checkpoint"], sr_weights=context.artifacts.get("sr_weights")
        )
        self.finder: Any = None  # the face detector (nrfer.faces), built on the first photo

    def predict_photos(self, photos) -> pd.DataFrame:
        """One row per face of each photo (see the module's docstring)."""
        if len(photos) > max_request():
            raise ValueError(
                f"a request of {len(photos)} photos is over the limit of {max_request()} "
                f"({MAX_REQUEST_ENV}); split it into smaller requests"
            )
        if getattr(self, "finder", None) is None:
            from nrfer.faces import FaceFinder

            self.finder = FaceFinder()
        names = self.predictor.class_names
        rows = []
        for i, value in enumerate(photos):
            faces = self.finder(decode_photo(value, i))
            found = self.predictor.predict_proba([f.image for f in faces])
            for k, (face, p) in enumerate(zip(faces, found, strict=True)):
                x, y, w, h = face.box
                box = {"x": x, "y": y, "w": w, "h": h}
                probs = dict(zip(names, map(float, p), strict=True))
                rows.append({PHOTO: i, "face": k, **box, **probs, "label": names[int(p.argmax())]})
            if not faces:
                rows.append({PHOTO: i, "face": -1, "label": ""})
        columns = [PHOTO, "face", "x", "y", "w", "h", *names, "label"]
        frame = pd.DataFrame(rows, columns=columns)
        for key in "xywh":  # whole pixels (a no-face row's NaN would make them floats): null
            frame[key] = pd.Series([r.get(key) for r in rows], dtype=object)
        return frame

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, dict):  # a named tensor input
            (model_input,) = model_input.values()
        if isinstance(model_input, pd.DataFrame) and PHOTO in model_input.columns:
            return self.predict_photos(list(model_input[PHOTO]))
        if isinstance(model_input, pd.DataFrame):  # e.g. dataframe_split of flattened faces
            model_input = model_input.to_numpy()
        images = np.asarray(model_input)
        if images.ndim == 2:  # one face
            images = images[None]
        if len(images) > max_request():
            raise ValueError(
                f"a request of {len(images)} faces is over the limit of {max_request()} "
                f"({MAX_REQUEST_ENV}); split it into smaller requests"
            )
        probs = self.predictor.predict_proba(list(images))  # in batches: bounded memory
        names = self.predictor.class_names
        frame = pd.DataFrame(probs.astype(np.float64), columns=names)
        frame["label"] = [names[i] for i in probs.argmax(axis=1)]
        return frame


# Models registered before the rename load their code by this name: keep it.
FERModel = FERPyfunc


def signature(class_names: list[str]) -> ModelSignature:
    """The output columns of a face tensor's rows; the input schema is left open (faces as
    a tensor, or photos as a DataFrame column: MLflow enforces one input schema)."""
    columns: list[ColSpec | TensorSpec] = [ColSpec("double", c) for c in class_names]
    columns.append(ColSpec("string", "label"))
    return ModelSignature(inputs=None, outputs=Schema(columns))


def model_artifacts(checkpoint: Path) -> dict[str, str]:
    """The files the served model needs: the checkpoint, and the SR weights it was trained
    with when its SR stage is a learned model."""
    artifacts = {"checkpoint": str(checkpoint)}
    sr = load_checkpoint(checkpoint)["config"]["data"]["sr"]
    if sr["method"] == "model":
        weights = Path(sr["weights"])
        if not weights.is_file():
            raise CheckpointError(
                f"{checkpoint} was trained with SR weights {weights}, which are gone; the model "
                "cannot be registered without them"
            )
        artifacts["sr_weights"] = str(weights)
    return artifacts


def log_and_register(checkpoint: Path, class_names: list[str], model_name: str, run_id: str) -> str:
    """Log the pyfunc under `run_id` and register it; returns the new model version. A model
    trained on learned-SR faces carries its SR weights too (the trainer's path is not where
    the model is served)."""
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),  # models from code: nothing is pickled
            artifacts=model_artifacts(checkpoint),
            signature=signature(class_names),
            registered_model_name=model_name,
            pip_requirements=[
                "torch",
                "timm",
                "numpy",
                "pillow",
                "pandas",
                "mlflow",
                "pydantic",
                "pyyaml",
                "opencv-python-headless<5",
            ],
        )
    return str(info.registered_model_version)
