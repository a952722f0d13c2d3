"""Per-backbone timm arguments in a space searching several backbones; sampled values as
reproduce-best prints them."""

import yaml

from helpers import TINY_VIT, tiny_space
from nrfer.config import dotted_value as config_value
from nrfer.config import make_config
from nrfer.models import build_model
from sweep.spec.space import parse_space


def test_each_backbone_gets_its_own_arguments(synthetic_root):
    space = tiny_space(
        "per-backbone",
        synthetic_root,
        search={
            "model.backbone": {"choice": ["vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"]}
        },
        scheduler={"name": "fifo", "max_epochs": 1},
        budget={"num_samples": 2, "max_concurrent": 1},
    )
    space["fixed"]["model"] = {
        "backbone_args": {},
        "per_backbone_args": {
            "vit_tiny_patch16_224": {**TINY_VIT, "depth": 1},
            "swin_tiny_patch4_window7_224": {"img_size": 56, "embed_dim": 24, "depths": [1, 1], "num_heads": [1, 2], "window_size": 7},
        },
    }  # fmt: skip
    spec = parse_space(yaml.safe_load(yaml.safe_dump(space)), "s.yaml")
    vit = spec.trial_config({"model.backbone": "vit_tiny_patch16_224"}).model
    swin = spec.trial_config({"model.backbone": "swin_tiny_patch4_window7_224"}).model
    assert vit.timm_args["depth"] == 1 and "depths" not in vit.timm_args
    assert swin.timm_args["depths"] == [1, 1] and "depth" not in swin.timm_args
    assert len(build_model(vit, 8).backbone.blocks) == 1
    assert [len(s.blocks) for s in build_model(swin, 8).backbone.layers] == [1, 1]
    # backbone_args still apply to every backbone, the per-backbone entry wins
    m = make_config({"model": {"backbone_args": {"drop_rate": 0.1, "depth": 3}, "per_backbone_args": {"vit_tiny_patch16_224": {"depth": 2}}}}).model  # fmt: skip
    assert m.timm_args == {"drop_rate": 0.1, "depth": 2}


def test_sampled_values_inside_kept_dicts_are_found():
    cfg = make_config({"model": {"backbone_args": {"depth": 1}}}).to_dict()
    assert config_value(cfg, "model.backbone_args.depth") == 1
    assert config_value(cfg, "optim.lr") == cfg["optim"]["lr"]
    assert config_value(cfg, "model.nothing.here") is None
