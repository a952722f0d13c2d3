"""nrfer export: one ONNX graph (STN, resizer, backbone, softmax) with a dynamic batch that
onnxruntime runs to PyTorch's probabilities; a file off by more than the tolerance is refused."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from nrfer.config import make_config
from nrfer.export import main


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_config_dict):
    """A model with our STN and the resizer, 1 epoch."""
    from nrfer.train import fit

    out = tmp_path_factory.mktemp("export") / "run"
    raw = {
        **tiny_config_dict,
        "model": {**tiny_config_dict["model"], "stn": True},
        "train": {**tiny_config_dict["train"], "epochs": 1},
    }
    fit(make_config(raw), out_dir=out, evaluate_test=False)
    return out / "checkpoint" / "best.pt"


def test_the_graph_gives_pytorchs_probabilities_at_any_batch(model, tmp_path, capsys):
    from nrfer.data import load_data
    from nrfer.predict import Predictor

    path = tmp_path / "m.onnx"
    assert main(["--model", str(model), "--onnx", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["faces"] == 64 and report["max_abs_diff"] <= 1e-4
    assert report["faces_from"].startswith("synthetic:")
    graph = onnx.load(str(path))
    ops = {n.op_type for n in graph.graph.node}
    assert {"AffineGrid", "GridSample", "Softmax"} <= ops  # the STN and the softmax inside
    meta = {p.key: p.value for p in graph.metadata_props}
    predictor = Predictor.from_path(model)
    assert json.loads(meta["nrfer.class_names"]) == predictor.class_names
    assert "resized (bilinear, antialiased) to 48x48" in meta["nrfer.preprocess"]
    # the test's own check: 64 test faces and other batch sizes, against the checkpoint
    faces = load_data(predictor.config.data, sr=False).test.images[:64]
    x = predictor.preprocess(list(faces)).float()
    with torch.inference_mode():
        expected = torch.softmax(predictor.model(x), 1).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 64):
        got = np.concatenate(
            [
                session.run(["probabilities"], {"faces": x[i : i + batch].numpy()})[0]
                for i in range(0, 64, batch)
            ]
        )
        assert got.shape == (64, 8) and np.abs(got - expected).max() <= 1e-4, batch
    assert (expected.argmax(1) == got.argmax(1)).all()


def test_a_file_off_by_more_than_the_tolerance_is_refused(model, tmp_path, capsys):
    from nrfer.checkpoint import load_checkpoint
    from nrfer.export import export_onnx

    path = tmp_path / "m.onnx"
    with pytest.raises(ValueError, match=r"the ONNX graph differs from PyTorch by .* on 8 faces"):
        export_onnx(load_checkpoint(model), path, faces=8, tolerance=-1.0)  # none can meet it
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert main(["--model", str(tmp_path / "none.pt"), "--onnx", str(path)]) == 2
    assert "--model" in capsys.readouterr().err and not path.exists()


def test_a_refused_export_keeps_the_earlier_file_and_never_writes_over_its_model(
    model, tmp_path, capsys
):
    """A parity failure leaves an earlier good export as it was (the graph is written beside
    it and renamed only once it passed); --onnx naming the model it reads is refused before
    anything is written; a tolerance outside (0, 1], an empty path or a folder: flag named."""
    import shutil

    path = tmp_path / "keep.onnx"
    assert main(["--model", str(model), "--onnx", str(path), "--faces", "8"]) == 0
    good = path.read_bytes()
    capsys.readouterr()
    # a graph that fails its parity check: refused, and the earlier file is untouched, whole
    from nrfer.checkpoint import load_checkpoint
    from nrfer.export import export_onnx

    with pytest.raises(ValueError, match="nothing was written"):
        export_onnx(load_checkpoint(model), path, faces=8, tolerance=-1.0)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]  # no temp file left
    for bad in ("-1", "nan", "0", "2"):
        with pytest.raises(SystemExit):
            main(["--model", str(model), "--onnx", str(path), "--tolerance", bad])
        assert "--tolerance" in capsys.readouterr().err
    for bad in ("", str(tmp_path)):
        with pytest.raises(SystemExit):
            main(["--model", str(model), "--onnx", bad])
        assert "--onnx" in capsys.readouterr().err
    # the model file itself as the output: refused, the checkpoint intact
    own = tmp_path / "run" / "checkpoint" / "best.pt"
    own.parent.mkdir(parents=True)
    shutil.copy(model, own)
    before = own.read_bytes()
    assert main(["--model", str(own), "--onnx", str(own)]) == 2
    assert "--onnx" in capsys.readouterr().err and own.read_bytes() == before
    assert main(["--model", str(own.parent.parent), "--onnx", str(own)]) == 2
    assert own.read_bytes() == before
