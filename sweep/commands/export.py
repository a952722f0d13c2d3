"""`nrfer export`: a model (in MLflow or on disk) as one ONNX graph (STN, Neural Resizer,
backbone, softmax; dynamic batch), checked against PyTorch through onnxruntime, and, for a
registered model, logged to that version.

    nrfer export --model models:/nrfer-demo@champion --onnx nrfer-demo.onnx
    nrfer export --model runs/demo/checkpoint/best.pt --onnx model.onnx --faces 128

--model: models:/NAME@ALIAS (`nrfer best` sets `champion`), models:/NAME/VERSION, runs:/ID/
PATH, or a local best.pt / training folder. The graph's input `faces` is float32
[N, C, H, W] in 0..1 after the model's preprocessing (its metadata says which); its output
`probabilities` [N, K]. Parity: the largest difference of a probability from PyTorch's on
--faces faces (and batches of 1) must be at most --tolerance, else nothing is written. A
registered version gets the file as its run's artifact `onnx/<file>` and the tags
nrfer.onnx (that artifact's URI), nrfer.onnx_max_abs_diff and nrfer.onnx_opset. The store
is --tracking-uri, else $MLFLOW_TRACKING_URI, else ./mlflow.db (as every sweep command).
"""

from __future__ import annotations

import re

from nrfer.cli import run_command
from nrfer.parsers import export_parser

REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def parser():
    return export_parser(__doc__, mlflow=True)


def log_to_version(model: str, exported, uri: str | None) -> str | None:
    """The ONNX file logged to the run of the registered version `model` names (and tagged
    on the version); None for a model that is not models:/NAME@ALIAS or /VERSION."""
    found = REGISTERED.match(model)
    if found is None:
        return None
    from mlflow.tracking import MlflowClient

    from sweep.commands.predict import store_uris
    from sweep.tracking.store import check_tracking_uri, tracking_uri

    store = check_tracking_uri(tracking_uri(uri), "--tracking-uri")
    with store_uris(store):
        client = MlflowClient(store, registry_uri=store)
        name = found["name"]
        version = (
            client.get_model_version_by_alias(name, found["alias"])
            if found["alias"]
            else client.get_model_version(name, found["version"])
        )
        client.log_artifact(version.run_id, str(exported.path), "onnx")
        artifact = f"runs:/{version.run_id}/onnx/{exported.path.name}"
        tags = {
            "nrfer.onnx": artifact,
            "nrfer.onnx_max_abs_diff": f"{exported.max_abs_diff:.3e}",
            "nrfer.onnx_opset": str(exported.opset),
        }
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
    print(f"  logged to {name} version {version.version}: {artifact}")
    return artifact


def main(argv: list[str] | None = None) -> int:
    def body(args) -> int:
        from nrfer.export import run  # torch: after parsing
        from sweep.commands.predict import fetch_model

        exported = run(args, lambda m: fetch_model(m, args.tracking_uri))
        log_to_version(args.model, exported, args.tracking_uri)
        return 0

    return run_command(parser(), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
