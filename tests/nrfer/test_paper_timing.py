"""The paper's options: schedule stepped before each epoch, black-filled nearest warps,
deterministic kernels."""

import pytest
import torch

from nrfer.config import make_config
from nrfer.data.augment import augment_batch
from nrfer.train import fit


@pytest.mark.slow
def test_schedule_step_timing_and_deterministic_switch(tiny_config_dict, tmp_path):
    train = {**tiny_config_dict["train"], "epochs": 3, "deterministic": True}
    lrs = {}
    for step_at in ("epoch_end", "epoch_start"):
        sched = {"name": "step", "step_size": 2, "gamma": 0.5, "step_at": step_at}
        cfg = make_config(
            {**tiny_config_dict, "train": train, "scheduler": sched, "optim": {"lr": 0.01}}
        )
        seen = []
        out = fit(
            cfg,
            callback=lambda m, _, seen=seen: seen.append(
                torch.are_deterministic_algorithms_enabled()
            ),
            out_dir=tmp_path / step_at,
            evaluate_test=False,
        )
        lrs[step_at] = [h["lr"] for h in out.history]
        assert seen == [True, True, True] and torch.backends.cudnn.deterministic
    # PyTorch's order decays after epoch 1 (step_size 2); the paper's one epoch earlier
    assert lrs["epoch_end"] == pytest.approx([0.01, 0.01, 0.005])
    assert lrs["epoch_start"] == pytest.approx([0.01, 0.005, 0.005])
    # the next fit without the switch turns it off again (a Ray worker runs many trials)
    cfg = make_config({**tiny_config_dict, "train": {**train, "epochs": 1, "deterministic": False}})
    fit(cfg, out_dir=tmp_path / "off", evaluate_test=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_black_fill_and_nearest_resampling():
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    base = {"rotate_deg": 45, "flip": 0, "scale": 0, "translate": 0, "brightness": 0,
            "contrast": 0, "erase": 0}  # fmt: skip
    outs = {}
    for fill in ("border", "black"):
        for resample in ("bilinear", "nearest"):
            aug = make_config({"augment": {**base, "fill": fill, "resample": resample}}).augment
            outs[fill, resample] = augment_batch(x, aug, torch.Generator().manual_seed(1))
    corner = (slice(None), 0, 0, 0)
    # the input is >= 0.5 everywhere: black corners are 0, border ones are image pixels
    assert (outs["black", "bilinear"][corner] < 0.05).all()
    assert (outs["border", "bilinear"][corner] >= 0.5).all()
    # nearest sampling only ever returns input values (or the black fill)
    near = outs["black", "nearest"]
    inside = near[near > 0]
    assert torch.isin(inside, x).all() and not torch.isin(outs["black", "bilinear"], x).all()
