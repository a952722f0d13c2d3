"""timm backbones by name, their heads, and local pretrained weights.

Backbones go straight to `timm.create_model(name, **overrides)` (overrides such as
`img_size`, `patch_size`, `depth`, `embed_dim` make tiny CPU variants); weights come only
from a local file, never from the network.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from nrfer.registry import Registry, suggest

HEADS: Registry = Registry("head")


@HEADS.register("linear")
def linear_head(
    in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.0
) -> nn.Module:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))


@HEADS.register("mlp")
def mlp_head(
    in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.0
) -> nn.Module:
    """The paper's head: Linear-BN-ReLU-Dropout-Linear."""
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def check_backbone_name(name: str) -> None:
    if not timm.is_model(name):
        raise ValueError(
            f"timm does not know backbone {name!r}; {suggest(name, timm.list_models())}"
        )


def create_backbone(
    name: str, overrides: dict | None = None, pretrained: str | None = None
) -> nn.Module:
    """A headless timm model (num_classes=0: forward returns pooled features)."""
    check_backbone_name(name)
    kwargs = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except TypeError as e:
        raise ValueError(f"backbone {name!r} rejected the overrides {kwargs}: {e}") from None
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict (timm/.pth/.bin/.safetensors), skipping the classifier head."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: none of its tensors match the backbone's parameters")
    missing = [k for k in own if k not in usable]
    model.load_state_dict(usable, strict=False)
    if missing and len(missing) > len(own) // 2:
        raise ValueError(
            f"{path}: only {len(usable)} of {len(own)} backbone tensors match; wrong architecture?"
        )


def backbone_input_size(model: nn.Module) -> tuple[int, int]:
    """The size the backbone was built for: a transformer's patch-embed size (which follows an
    `img_size` override), else the pretrained config's input size."""
    img_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if img_size is not None:
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
        return int(h), int(w)
    cfg = timm.data.resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    return int(h), int(w)


def backbone_norm(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    cfg = timm.data.resolve_data_config({}, model=model)
    return tuple(cfg["mean"]), tuple(cfg["std"])
