"""A model trained on learned-SR faces is registered with its SR weights: served from the
registry, it predicts as the trainer's own model does, with the trainer's file gone."""

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def test_registered_model_carries_its_sr_weights(tmp_path, tiny_config_dict, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from nrfer.config import make_config
    from nrfer.data import load_data
    from nrfer.predict import Predictor
    from nrfer.sr.net import FaceSR, save_sr_weights
    from nrfer.train import fit
    from sweep.commands.serving import log_and_register

    torch.manual_seed(0)
    sr_net = FaceSR(2)
    torch.nn.init.normal_(sr_net.tail.weight, std=0.05)  # not plain bicubic: the file matters
    weights = save_sr_weights(sr_net, "face_sr", {"scale": 2}, tmp_path / "sr.pt")
    raw = {
        **tiny_config_dict,
        "data": {
            **tiny_config_dict["data"],
            "sr": {
                "method": "model",
                "scale": 2,
                "weights": str(weights),
                "cache_dir": str(tmp_path / "cache"),
            },
        },
        "model": {
            **tiny_config_dict["model"],
            "backbone_args": {**tiny_config_dict["model"]["backbone_args"], "img_size": 64},
        },
        "train": {**tiny_config_dict["train"], "epochs": 1},
    }
    cfg = make_config(raw)
    data = load_data(cfg.data)
    result = fit(cfg, data=data, out_dir=tmp_path / "run")
    best = tmp_path / "run" / "checkpoint" / "best.pt"
    faces = [f[0] for f in load_data(make_config(tiny_config_dict).data).test.images[:3]]
    expected = Predictor.from_path(best).predict_proba(faces)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("sr-model")).info.run_id
    version = log_and_register(best, result.class_names, "fer-sr", run_id)
    weights.rename(tmp_path / "moved.pt")  # the trainer's SR file is gone
    served = mlflow.pyfunc.load_model(f"models:/fer-sr/{version}")
    out = served.predict(np.stack(faces).astype(np.float64))
    np.testing.assert_allclose(out[result.class_names].to_numpy(), expected, atol=1e-5)
    with pytest.raises(Exception, match="SR weights .*sr.pt do not exist"):
        Predictor.from_path(best)  # without the registered copy it would need the old path
