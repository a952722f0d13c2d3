"""Predict expressions for image files with a trained model.

    python -m nrfer.predict --model runs/demo/checkpoint/best.pt face1.png face2.jpg
    python -m nrfer.predict --model runs/demo --json faces/*.png

--model takes a best.pt checkpoint (self-contained: weights, config, class names, input
shape) or a training output folder. A model in MLflow (models:/NAME@champion, the alias
`nrfer best` sets; models:/NAME/VERSION; runs:/...) is `nrfer predict` (sweep.commands.predict),
the same command with MLflow at the sweep layer (nrfer never imports it).
Images of any size and colour are converted as in training (grayscale, resized to the
training input size, or to the pre-SR size and then through the same SR stage). A bad path or
an undecodable image is an error for that image only.

A photo (--faces auto: an image larger than 128 px a side) is searched for faces with
OpenCV's Haar cascade (nrfer.faces; --detector for a cascade XML of your own): each face is
aligned (eyes level where they are found), cropped and predicted, one line per face with its
box; --annotate writes the photo with boxes and labels. A photo without a face says so.

    python -m nrfer.predict --model best.pt --json --annotate out.png photo.jpg
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nrfer.checkpoint import load_checkpoint, load_into, require
from nrfer.cli import one_line, run_command
from nrfer.config import make_config
from nrfer.data.types import DataFormatError, image_to_uint8
from nrfer.device import resolve_device
from nrfer.models import build_model
from nrfer.parsers import is_model_uri, predict_parser

MAX_SIDE = 4096  # a face a model was trained on is far smaller (FER+ x8 SR: 384 px)


def checked_input_shape(shape, source: str) -> tuple[int, int, int]:
    """A checkpoint's `input_shape` as (channels, height, width), refused when it is not 1 or
    3 channels of at most MAX_SIDE px a side (a tampered one made predict allocate 40 GB)."""
    ok = (
        isinstance(shape, list | tuple)
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        and shape[0] in (1, 3)
        and all(8 <= v <= MAX_SIDE for v in shape[1:])
    )
    if not ok:
        raise ValueError(
            f"{source}: input_shape {str(shape)[:60]} is not [1 or 3 channels, height, width] "
            f"with sides of 8..{MAX_SIDE} px; the checkpoint is damaged or not ours"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


BATCH = 64  # images per forward pass in predict_proba (the command's --batch-size default)


class Predictor:
    """A trained model plus its preprocessing: images in, class probabilities out."""

    def __init__(
        self,
        state: dict,
        device: str = "cpu",
        sr_weights: str | Path | None = None,
        source: str = "checkpoint",
    ) -> None:
        """sr_weights: the SR model file to use for `data.sr.method: model` (a registered
        model carries its own copy); default: the path the training config names."""
        require(state, "model", source)
        self.config = make_config(state["config"], "checkpoint config")
        self.class_names = list(state["class_names"])
        self.channels, self.height, self.width = checked_input_shape(state["input_shape"], source)
        self.device = resolve_device(device, "--device")
        # the checkpoint holds every weight: the backbone's pretrained file is not needed
        self.config.model.pretrained = None
        self.model = build_model(
            self.config.model, len(self.class_names), (self.height, self.width)
        )
        load_into(self.model, state["model"], source, "model")
        self.model.to(self.device).eval()
        # Trained on super-resolved faces: resize to the pre-SR size, then the same SR.
        self.sr = self.config.data.sr
        self.sr_model = None
        if self.sr.method == "model":
            from nrfer.sr.net import load_sr_model

            weights = sr_weights or self.sr.weights
            if not weights:
                raise ValueError("data.sr.method is model: its data.sr.weights file is needed")
            self.sr_model = load_sr_model(weights, self.device)

    @classmethod
    def from_path(
        cls, path: str | Path, device: str = "cpu", sr_weights: str | Path | None = None
    ) -> Predictor:
        path = model_file(path)
        return cls(load_checkpoint(path), device, sr_weights, str(path))

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8/float images (H, W), (H, W, 3|4) or (C, H, W) in 0..255 -> [N, C, h, w] in [0, 1]."""
        out = []
        for img in images:
            x = torch.as_tensor(np.asarray(img, dtype=np.float32))
            if x.ndim == 2:
                x = x[None]
            elif x.ndim == 3 and x.shape[-1] in (3, 4) and x.shape[0] not in (1, 3):
                x = x[..., :3].permute(2, 0, 1)
            if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
                raise ValueError(
                    f"an image must be (H, W), (H, W, 3) or (C, H, W), got shape {tuple(x.shape)}"
                )
            x = x[:3]
            if self.channels == 1 and x.shape[0] == 3:  # ITU-R 601 luma, as PIL's convert("L")
                x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
            elif self.channels == 3 and x.shape[0] == 1:
                x = x.expand(3, -1, -1)
            scale = 1 if self.sr.method == "none" else self.sr.scale
            size = (self.height // scale, self.width // scale)
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(
                    x[None], size=size, mode="bilinear", align_corners=False, antialias=True
                )[0]
            out.append(x.clamp(0, 255))
        batch = torch.stack(out)
        if self.sr.method != "none":
            from nrfer.sr import upscale

            u8 = batch.round().to(torch.uint8).numpy()
            batch = torch.from_numpy(
                upscale(u8, self.sr.scale, self.sr.method, self.sr_model, self.device)
            ).float()
        return (batch / 255).to(self.device)

    @torch.inference_mode()
    def predict_proba(self, images: list[np.ndarray], batch_size: int = BATCH) -> np.ndarray:
        """Class probabilities [N, K], `batch_size` images at a time (memory stays bounded
        whatever N is)."""
        if not images:
            return np.zeros((0, len(self.class_names)), np.float32)
        out = [
            torch.softmax(self.model(self.preprocess(images[i : i + batch_size])).float(), 1)
            .cpu()
            .numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out)


def model_file(path: str | Path) -> Path:
    """A model's best.pt: the file given, or the one in a training folder, its checkpoint
    folder or a downloaded MLflow model (artifacts/)."""
    path = Path(path)
    if not path.is_dir():
        return path
    candidates = [path / "checkpoint" / "best.pt", path / "best.pt", path / "artifacts" / "best.pt"]
    return next((c for c in candidates if c.is_file()), candidates[0])


MIN_SIDE = 16  # below this a face has no expression left to read: the answer is a guess


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W) or (H, W, 3); 16-bit images scaled to 8 bits."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    try:
        with Image.open(path) as opened:
            if opened.mode == "F":
                raise DataFormatError(f"{path}: floating-point images are not supported")
            im = ImageOps.exif_transpose(opened)  # a phone photo stored turned: upright
            img = image_to_uint8(im)
    except Image.DecompressionBombError as e:
        raise DataFormatError(f"{path}: refused, too many pixels for one face ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        # ValueError: PIL's limits, e.g. "Decompressed data too large" for a huge text chunk
        raise DataFormatError(f"{path}: cannot be decoded as an image: {e}") from None
    if min(img.shape[:2]) < MIN_SIDE:
        warnings.warn(
            f"{path}: {img.shape[1]}x{img.shape[0]} px is below {MIN_SIDE} px a side; faces were "
            "trained at 48x48, so this answer says little",
            stacklevel=2,
        )
    return img


def local_model(model: str, command: str = "sweep.commands.predict") -> Path:
    """`--model` of this command: a local path; an MLflow URI names the command that reads it."""
    if is_model_uri(model):
        raise ValueError(
            f"an MLflow model URI; python -m {command} fetches it (same arguments, plus "
            "--tracking-uri)"
        )
    return Path(model)


def main(argv: list[str] | None = None) -> int:
    return run_command(predict_parser(__doc__), lambda args: predict_files(args, local_model), argv)


CROP_SIDE = 128  # --faces auto: an image no larger than this a side is taken as a face crop


def is_crop(img: np.ndarray, mode: str) -> bool:
    """Whether an image is one face (--faces whole, or auto and at most CROP_SIDE a side)
    rather than a photo to search for faces."""
    return mode == "whole" or (mode == "auto" and max(img.shape[:2]) <= CROP_SIDE)


def predict_files(args, resolve: Callable[[str], Path]) -> int:
    """Print a prediction per face of `args.images` with the model `resolve(args.model)`
    names: a small image is a face crop, a photo is searched for faces (nrfer.faces; see
    --faces); an image that cannot be read is an error for that image only (exit 1)."""
    try:
        predictor = Predictor.from_path(resolve(args.model), args.device)
    except (ValueError, OSError) as e:
        raise ValueError(f"--model {args.model}: {one_line(e)}") from None
    finder = None
    if args.faces != "whole":
        from nrfer.faces import FaceFinder

        try:
            finder = FaceFinder(args.detector, min_face=args.min_face, margin=args.margin)
        except ValueError as e:
            raise ValueError(one_line(e)) from None
    annotate_to = annotation_paths(args)
    failed = 0
    for start in range(0, len(args.images), args.batch_size):  # read and run a batch at a time
        batch: list[tuple[str, np.ndarray]] = []
        for path in args.images[start : start + args.batch_size]:
            try:
                batch.append((path, read_image(path)))
            except DataFormatError as e:
                failed += 1
                print(f"error: {e}", file=sys.stderr)
        at = [k for k, (_, img) in enumerate(batch) if is_crop(img, args.faces)]
        rows = dict(
            zip(
                at,
                crop_probabilities(predictor, [batch[k] for k in at], args.batch_size),
                strict=True,
            )
        )
        for k, (path, img) in enumerate(batch):  # printed in the order given
            try:
                if k in rows:
                    row = rows[k]
                    if isinstance(row, Exception):
                        raise row
                    _print_prediction(args, predictor, path, row)
                    if path in annotate_to:
                        labels = [label_of(predictor, row)]
                        write_annotated(img, [whole_face(img)], labels, annotate_to[path])
                else:
                    assert finder is not None  # photos only when faces are searched for
                    predict_photo(args, predictor, finder, path, img, annotate_to.get(path))
            except Exception as e:  # noqa: BLE001 - one bad image must not stop the batch
                failed += 1
                print(f"error: {path}: {one_line(e)}", file=sys.stderr)
    return 1 if failed else 0


def annotation_paths(args) -> dict[str, Path]:
    """--annotate: with one image, the file to write (or, when it names a folder, a file
    in it); with several, a folder that gets <image name>.annotated.png for each image
    (<name>-2.annotated.png ... when two inputs share a name). Never one of the inputs,
    and only a format PIL writes."""
    if not args.annotate:
        return {}
    from PIL import Image

    target = Path(args.annotate)
    if len(args.images) == 1 and not target.is_dir():  # a file
        if Image.registered_extensions().get(target.suffix.lower()) is None:
            raise ValueError(
                f"--annotate {target}: no image format for the extension "
                f"{target.suffix or '(none)'!r}; give a file ending in .png or .jpg, or a folder"
            )
        out = {args.images[0]: target}
    else:
        if target.exists() and not target.is_dir():
            raise ValueError(f"--annotate {target}: is a file; several images need a folder")
        out, taken = {}, set()
        for p in dict.fromkeys(args.images):
            name, k = Path(p).stem, 1
            while name.lower() in taken:
                k += 1
                name = f"{Path(p).stem}-{k}"
            taken.add(name.lower())
            out[p] = target / f"{name}.annotated.png"
    from nrfer.files import refuse_own_input

    for written in out.values():
        refuse_own_input(written, list(args.images), "--annotate")
    return out


def crop_probabilities(
    predictor: Predictor, crops: list[tuple[str, np.ndarray]], batch_size: int
) -> list:
    """Each face image's probabilities, in one batch; where the batch fails on a bad shape,
    one at a time, so the error (kept in its place) names the image."""
    try:
        return list(predictor.predict_proba([img for _, img in crops], batch_size))
    except ValueError:
        pass
    out: list = []
    for _, img in crops:
        try:
            out.append(predictor.predict_proba([img])[0])
        except ValueError as e:
            out.append(e)
    return out


def whole_face(img: np.ndarray):
    """A crop taken as one face: its box is the whole image."""
    from nrfer.faces import Face

    return Face((0, 0, img.shape[1] - 1, img.shape[0] - 1), None, 0.0, img)


def label_of(predictor: Predictor, probs: np.ndarray) -> str:
    return f"{predictor.class_names[int(probs.argmax())]} {probs.max():.2f}"


def write_annotated(img: np.ndarray, faces: list, labels: list[str], path: Path) -> None:
    from nrfer.faces import annotate
    from nrfer.files import save_image

    save_image(Image.fromarray(annotate(img, faces, labels)), path)


def predict_photo(args, predictor: Predictor, finder, path: str, img, annotate_to) -> None:
    """Each face of a photo: found, aligned, predicted, printed; the photo annotated."""
    faces = finder(img)
    probs = predictor.predict_proba([f.image for f in faces], args.batch_size)
    labels = [label_of(predictor, p) for p in probs]
    if annotate_to is not None:
        write_annotated(img, faces, labels, annotate_to)
    if not faces:
        side = finder.min_side(*img.shape[:2])
        searched = (
            f"searched with {finder.name} for faces of at least {side} px; "
            "--min-face PX searches smaller ones"
        )
        if args.json:
            print(json.dumps({"image": path, "faces": 0, "label": None, "searched": searched}))
        else:
            print(f"{path}: no face found ({searched}; --faces whole takes it as one face)")
        return
    for k, (face, row) in enumerate(zip(faces, probs, strict=True)):
        _print_prediction(args, predictor, path, row, {"face": k, **face.to_dict()})


def _print_prediction(
    args, predictor: Predictor, path: str, probs: np.ndarray, face: dict | None = None
) -> None:
    top = int(probs.argmax())
    if not args.json:
        where = "" if face is None else f" face {face['face']} at {tuple(face['box'])}"
        print(f"{path}:{where} {predictor.class_names[top]} ({probs[top]:.3f})")
        return
    probabilities = dict(zip(predictor.class_names, map(float, probs), strict=True))
    row = {"image": path, **(face or {}), "label": predictor.class_names[top]}
    print(json.dumps({**row, "probabilities": probabilities}))


if __name__ == "__main__":
    raise SystemExit(main())
