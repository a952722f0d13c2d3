"""timm backbones by name, their heads, and local pretrained weights.

Backbones go straight to `timm.create_model(name, **overrides)` (overrides such as
`img_size`, `patch_size`, `depth`, `embed_dim` make tiny CPU variants); weights come only
from local files or the local Hugging Face cache (nrfer.models.pretrained), never the network.
"""

from __future__ import annotations

import timm
from torch import nn

from nrfer.errors import first_line
from nrfer.models.pretrained import load_pretrained, resolve_weights
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
    """A headless timm model (num_classes=0: forward returns pooled features), with weights
    from `pretrained` (a file, a folder of per-backbone files, or `hub`; see
    nrfer.models.pretrained). What the load did is in `model.nrfer_pretrained`."""
    check_backbone_name(name)
    kwargs = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except Exception as e:  # TypeError (unknown argument), AssertionError, ValueError, ...
        first = first_line(e)
        raise ValueError(
            f"model.backbone_args: backbone {name!r} rejected {kwargs}: {first}"
        ) from None
    check_patch_grid(model, name)
    if pretrained:
        report = load_pretrained(model, resolve_weights(pretrained, name))
        model.nrfer_pretrained = report  # type: ignore[assignment]  # read by pretrained_report
    return model


def check_patch_grid(model: nn.Module, name: str) -> None:
    """A patch transformer whose input size is not a multiple of its patch size would
    silently drop the edge pixels: refuse it."""
    embed = getattr(model, "patch_embed", None)
    img, patch = getattr(embed, "img_size", None), getattr(embed, "patch_size", None)
    if img is None or patch is None:
        return
    img = (img, img) if isinstance(img, int) else tuple(img)
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    if any(int(i) % int(p) for i, p in zip(img, patch, strict=True)):
        raise ValueError(
            f"model.backbone_args: {name!r} with img_size {list(img)} and patch_size "
            f"{list(patch)}: the input size must be a multiple of the patch size (else the "
            "edge pixels are ignored)"
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
