"""The command-line parsers of nrfer's commands, apart from the code they run: building one
imports argparse only, so `--help` answers at once (torch, timm and the data readers load
after parsing). Each command's module (nrfer.train, nrfer.predict, ...) runs its parser.

The few fixed choices listed here (splits, TTA, SR methods and scales) are checked against
the code that owns them by tests/test_wheel.py.
"""

from __future__ import annotations

import argparse

from nrfer.cli import HelpFormatter, float_in, non_negative_int, output_file, positive_int

SPLITS = ("train", "val", "test")
TTA = ("none", "flip")
SR_METHODS = ("bicubic", "lanczos", "model")
SR_SCALES = (2, 4, 8)


def is_model_uri(model: str) -> bool:
    """An MLflow model URI (models:/, runs:/, a scheme://) rather than a local path."""
    return "://" in model or model.startswith(("models:/", "runs:/"))


def _parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)


def add_set(parser: argparse.ArgumentParser, example: str, what: str = "one key") -> None:
    """The repeatable --set option, into args.overrides: every command's one declaration."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override {what}, e.g. --set {example} (repeatable)",
    )


def train_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument("--config", help="trial config YAML (defaults for every key left out)")
    add_set(parser, "model.resizer.n=32")
    parser.add_argument("--out", help="output folder (default runs/train-<time>)")
    parser.add_argument("--resume", help="checkpoint file or folder to continue from")
    parser.add_argument(
        "--force-resume",
        action="store_true",
        help="continue --resume even if the config differs from the checkpoint's",
    )
    return parser


def add_model(parser: argparse.ArgumentParser, mlflow: bool) -> None:
    where = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/..., or " if mlflow else ""
    parser.add_argument("--model", required=True, help=f"{where}best.pt or a training folder")
    if mlflow:
        parser.add_argument(
            "--tracking-uri",
            help="the MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)",
        )


def predict_parser(
    doc: str | None = None, prog: str | None = None, mlflow: bool = False
) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    add_model(parser, mlflow)
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per forward pass"
    )
    parser.add_argument(
        "--faces",
        choices=("auto", "detect", "whole"),
        default="auto",
        help="auto: an image of at most 128 px a side is one face, a larger one a photo "
        "searched for faces; detect: search every image; whole: every image is one face",
    )
    parser.add_argument(
        "--detector", help="an OpenCV cascade XML (default: the frontal-face Haar cascade)"
    )
    parser.add_argument(
        "--min-face",
        type=positive_int,
        help="the smallest face searched, px (default: 6%% of the photo's shorter side)",
    )
    parser.add_argument(
        "--margin", type=float, default=0.1, help="the crop around a face box, per side"
    )
    parser.add_argument(
        "--annotate",
        metavar="PATH",
        help="write the photo with each face's box and label: a PNG/JPEG file for one image, "
        "a folder (<name>.annotated.png each) for several or when PATH is a folder",
    )
    parser.add_argument(
        "images", nargs="+", help="face images or photos (PNG, JPEG, ...; any size and colour)"
    )
    return parser


def evaluate_parser(
    doc: str | None = None, prog: str | None = None, mlflow: bool = False
) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    add_model(parser, mlflow)
    parser.add_argument("--dataset", help="a dataset name (default: the model's own data)")
    parser.add_argument("--root", help="the dataset's folder (data.root)")
    add_set(parser, "image_size=48 (a data key; data. may be left out)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="the split to evaluate")
    parser.add_argument("--tta", default="none", choices=TTA, help="flip: face + mirror")
    parser.add_argument("--out", help="folder for metrics, confusion matrix and predictions")
    parser.add_argument(
        "--degrade",
        nargs="+",
        action="extend",
        metavar="KIND:SEVERITY[,...]",
        help="also evaluate the faces degraded: lowres:PX blur:SIGMA jpeg:QUALITY "
        "noise:STD occlude:FRACTION, e.g. --degrade lowres:12,16,24 blur:1,2 jpeg:20,50 "
        "noise:0.05 occlude:0.25 (repeating the flag adds to the list)",
    )
    parser.add_argument(
        "--degrade-seed", type=non_negative_int, default=0, help="the seed of noise and occlusion"
    )
    parser.add_argument(
        "--exclude",
        metavar="AUDIT_CSV",
        help="also score the split without its faces that have a twin in an earlier split "
        "(the audit.csv of `nrfer data audit`)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    return parser


def export_parser(
    doc: str | None = None, prog: str | None = None, mlflow: bool = False
) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    add_model(parser, mlflow)
    parser.add_argument("--onnx", required=True, type=output_file, help="the ONNX file to write")
    parser.add_argument(
        "--faces", type=positive_int, default=64, help="faces the parity check runs"
    )
    parser.add_argument(
        "--tolerance",
        type=float_in(0, 1, closed_high=True),
        default=1e-4,
        help="the largest difference of a probability from PyTorch's that is accepted",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON")
    return parser


def data_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    parser.add_argument(
        "--dataset", required=True, help="ferplus | ferplus_folders | folders | rafdb | ..."
    )
    parser.add_argument("--root", help="the dataset's folder (synthetic: where it is cached)")
    parser.add_argument("--label-file", help="folders layout: the label CSV")
    parser.add_argument("--mode", default="majority", help="majority | crossentropy | probability")
    parser.add_argument(
        "--summary", action="store_true", help="print split sizes as one JSON object (default)"
    )
    return parser


def audit_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog or "nrfer data audit")
    parser.add_argument(
        "--dataset", required=True, help="ferplus | ferplus_folders | folders | rafdb | ..."
    )
    parser.add_argument("--root", help="the dataset's folder (synthetic: where it is cached)")
    parser.add_argument("--label-file", help="folders layout: the label CSV")
    parser.add_argument(
        "--out", required=True, help="folder for audit.csv, contact_sheet.png, summary.json"
    )
    parser.add_argument(
        "--sheet", type=positive_int, default=24, help="closest cross-split pairs on the sheet"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON")
    return parser


def add_sr_data(parser: argparse.ArgumentParser) -> None:
    """The data an SR command reads (nrfer.sr and nrfer.sr.train)."""
    parser.add_argument("--root", help="the dataset folder (default: the synthetic FER+ cache)")
    parser.add_argument(
        "--dataset", default=None, help="ferplus | folders | rafdb | affectnet | synthetic"
    )
    parser.add_argument(
        "--label-mode", default="majority", help="majority | crossentropy | probability"
    )


def sr_parser(doc: str | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    parser = _parser(doc, prog)
    add_sr_data(parser)
    parser.add_argument("--scale", type=int, choices=SR_SCALES, default=4, help="upscaling factor")
    parser.add_argument("--method", choices=SR_METHODS, default="bicubic", help="the SR method")
    parser.add_argument("--weights", help="method model: a TorchScript file or our SR weights")
    parser.add_argument("--out", required=True, help="the cache folder")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="faces per forward pass"
    )
    return parser
