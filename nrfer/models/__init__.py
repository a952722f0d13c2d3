"""FER models: [STN] -> Neural Resizer (or fixed interpolation) -> timm backbone -> head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nrfer.models.backbone import HEADS, backbone_input_size, backbone_norm, create_backbone
from nrfer.models.resizer import NeuralResizer
from nrfer.models.stn import PaperSTN, SpatialTransformer

__all__ = ["FERModel", "NeuralResizer", "PaperSTN", "SpatialTransformer", "build_model"]


class FERModel(nn.Module):
    mean: torch.Tensor  # buffers (move with the module)
    std: torch.Tensor
    """Input: float images in [0, 1], [B, 1 or 3, H, W], any H, W. Output: logits [B, K]."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        resizer: nn.Module | None = None,
        stn: nn.Module | None = None,
        interpolation: str = "bilinear",
        target_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.stn = stn
        self.resizer = resizer
        self.backbone = backbone
        self.head = head
        self.interpolation = interpolation
        self.target_size = target_size or backbone_input_size(backbone)
        mean, std = backbone_norm(backbone)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """The image the backbone sees, in [0, 1]-ish scale, at the backbone's input size."""
        if x.shape[1] == 1:  # grayscale kept 1-channel in memory, expanded here
            x = x.expand(-1, 3, -1, -1)
        if self.stn is not None:
            x = self.stn(x)
        if self.resizer is not None:
            return self.resizer(x)
        if tuple(x.shape[-2:]) == self.target_size:
            return x
        return F.interpolate(x, size=self.target_size, mode=self.interpolation, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (self.resize(x) - self.mean) / self.std
        return self.head(self.backbone(x))


def build_model(cfg, num_classes: int, image_size: tuple[int, int] | None = None) -> FERModel:
    """cfg: nrfer.config.ModelConfig; image_size: the (h, w) of the input images (needed by
    `stn: paper`, which is built for one size)."""
    backbone = create_backbone(cfg.backbone, cfg.timm_args, cfg.pretrained)
    head = HEADS.create(
        cfg.head,
        in_features=backbone.num_features,
        num_classes=num_classes,
        hidden=cfg.head_hidden,
        dropout=cfg.dropout,
    )
    target = (cfg.input_size, cfg.input_size) if cfg.input_size else backbone_input_size(backbone)
    resizer = None
    if cfg.resizer.enabled:
        resizer = NeuralResizer(
            target, n=cfg.resizer.n, r=cfg.resizer.r, interpolation=cfg.resizer.interpolation
        )
    stn: nn.Module | None = None
    if cfg.stn == "paper":
        if image_size is None:
            raise ValueError("model.stn: paper needs the input image size to build")
        stn = PaperSTN(image_size)
    elif cfg.stn:
        stn = SpatialTransformer()
    return FERModel(
        backbone,
        head,
        resizer=resizer,
        stn=stn,
        interpolation=cfg.resizer.interpolation,
        target_size=target,
    )
