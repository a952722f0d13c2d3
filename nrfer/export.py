"""Export a trained model to ONNX: STN, Neural Resizer and backbone in one graph, with a
softmax, batch size dynamic; checked against PyTorch through onnxruntime before it is kept.

    python -m nrfer.export --model runs/demo/checkpoint/best.pt --onnx model.onnx

The graph's input `faces` is float32 [N, C, H, W] in 0..1 at the model's input size, as
the model sees them after its preprocessing (grayscale, resized to the pre-SR size, then
the SR stage of its config; nrfer.predict.Predictor.preprocess); its output
`probabilities` is [N, K]. The file's metadata names the classes, the input and the
preprocessing (and holds the training config). The parity check runs the same --faces
faces (the model's own test faces where its data is readable, else synthetic FER+ faces)
through both and refuses the file when any probability differs by more than --tolerance;
batches of 1 are checked too (the dynamic batch axis). A model in MLflow
(models:/NAME@champion) is `nrfer export` (sweep.commands.export), which also logs the
file to the registered version.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

OPSET = 20  # the STN's affine_grid is an ONNX operator from opset 20
INPUT, OUTPUT = "faces", "probabilities"


class _Probabilities(torch.nn.Module):
    """The model with its softmax: what `nrfer predict` reports."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), 1)


@dataclass(frozen=True)
class Exported:
    path: Path
    opset: int
    faces: int  # checked
    max_abs_diff: float  # of probabilities, batch of all faces and batches of 1
    input_shape: tuple[int, int, int]
    class_names: list[str]
    faces_from: str

    def to_dict(self) -> dict:
        return {**self.__dict__, "path": str(self.path), "input_shape": list(self.input_shape)}


def parity_faces(predictor, n: int) -> tuple[np.ndarray, str]:
    """`n` raw faces to check with: the model's own test faces where its data is readable
    (as trained, before SR), else the synthetic FER+ test faces."""
    from nrfer.config import make_config
    from nrfer.data import load_data

    data_cfg = predictor.config.data
    try:
        data = load_data(data_cfg, sr=False)
        where = f"{data.source} test"
    except (OSError, ValueError):
        data = load_data(make_config({"data": {"dataset": "synthetic"}}).data, sr=False)
        where = f"{data.source} test (the model's own data is not readable here)"
    images = data.test.images[:n]
    if len(images) < n:  # a small test split: its faces again, mirrored
        images = np.concatenate([images, images[..., ::-1]])[:n]
    return np.ascontiguousarray(images), where


def export_onnx(
    state: dict, out: str | Path, *, faces: int = 64, tolerance: float = 1e-4, opset: int = OPSET
) -> Exported:
    """The checkpoint `state` (best.pt) as an ONNX file at `out`, checked against PyTorch
    on `faces` faces. It is written beside `out` and renamed onto it only once it passed:
    a graph that differs by more than `tolerance`, an error or a full disk leaves `out` as
    it was (an earlier export stays)."""
    from nrfer.files import atomic_path

    predictor_source = str(out)
    with atomic_path(out) as tmp:
        exported = _export_checked(state, tmp, faces, tolerance, opset, predictor_source)
    return dataclasses.replace(exported, path=Path(out))


def _export_checked(
    state: dict, out: Path, faces: int, tolerance: float, opset: int, source: str
) -> Exported:
    import onnx
    import onnxruntime as ort

    from nrfer.predict import Predictor

    predictor = Predictor(state, "cpu", source=source)
    wrapped = _Probabilities(predictor.model).eval()
    shape = (predictor.channels, predictor.height, predictor.width)
    example = torch.rand(2, *shape)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            str(out),
            dynamo=False,  # the TorchScript exporter: no onnxscript needed
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=opset,
        )
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    sr = predictor.sr
    meta = {
        "nrfer.class_names": json.dumps(predictor.class_names),
        "nrfer.input": f"float32 [N, {shape[0]}, {shape[1]}, {shape[2]}] in 0..1",
        "nrfer.preprocess": (
            "grayscale (ITU-R 601 luma), resized (bilinear, antialiased) to "
            + (
                f"{shape[1]}x{shape[2]}"
                if sr.method == "none"
                else f"{shape[1] // sr.scale}x{shape[2] // sr.scale}, then SR x{sr.scale} "
                f"({sr.method})"
            )
            + ", divided by 255"
        ),
        "nrfer.config": json.dumps(state["config"]),
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))

    raw, where = parity_faces(predictor, faces)
    x = predictor.preprocess(list(raw)).float().cpu()
    with torch.inference_mode():
        expected = wrapped(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: x.numpy()})[0]
    ones = np.concatenate(
        [session.run([OUTPUT], {INPUT: x[i : i + 1].numpy()})[0] for i in range(4)]
    )
    diff = float(max(np.abs(got - expected).max(), np.abs(ones - expected[:4]).max()))
    if not diff <= tolerance:
        raise ValueError(
            f"the ONNX graph differs from PyTorch by {diff:.2e} in a probability on {len(x)} "
            f"faces (tolerance {tolerance:g}); nothing was written ({source} is as it was)"
        )
    return Exported(out, opset, len(x), diff, shape, predictor.class_names, where)


def print_exported(e: Exported, model: str) -> None:
    c, h, w = e.input_shape
    print(
        f"{model} -> {e.path} ({e.path.stat().st_size / 1e6:.1f} MB, opset {e.opset}): input "
        f"'{INPUT}' float32 [batch, {c}, {h}, {w}], output '{OUTPUT}' [batch, "
        f"{len(e.class_names)}]"
    )
    print(
        f"  parity with PyTorch on {e.faces} faces ({e.faces_from}) and batches of 1: max |Δp| "
        f"{e.max_abs_diff:.2e}"
    )


def run(args, resolve) -> Exported:
    from nrfer.checkpoint import load_checkpoint
    from nrfer.cli import one_line
    from nrfer.files import refuse_own_input
    from nrfer.predict import model_file

    try:
        path = model_file(resolve(args.model))
    except (ValueError, OSError) as e:
        raise ValueError(f"--model {args.model}: {one_line(e)}") from None
    refuse_own_input(args.onnx, [path], "--onnx")
    try:
        state = load_checkpoint(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"--model {args.model}: {one_line(e)}") from None
    exported = export_onnx(state, args.onnx, faces=args.faces, tolerance=args.tolerance)
    if args.json:
        print(json.dumps({"model": args.model, **exported.to_dict()}))
    else:
        print_exported(exported, args.model)
    return exported


def main(argv: list[str] | None = None) -> int:
    from nrfer.cli import run_command
    from nrfer.parsers import export_parser
    from nrfer.predict import local_model

    def body(args) -> int:
        run(args, lambda m: local_model(m, "sweep.commands.export"))
        return 0

    return run_command(export_parser(__doc__), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
