"""Neural Resizer (Talebi & Milanfar, "Learning to Resize Images for Computer Vision Tasks",
ICCV 2021), as used by Hwang et al. 2022 in front of the transformer.

A bilinear skip path resizes the image to the target size; a conv path learns a residual
on top of it. Input: any size; output: `target_size`, 3 channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    align = False if mode in ("bilinear", "bicubic") else None
    return F.interpolate(x, size=size, mode=mode, align_corners=align)


class ResBlock(nn.Module):
    def __init__(self, channels: int, slope: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(slope),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class NeuralResizer(nn.Module):
    """n: conv-path channels (paper default 16); r: residual blocks (paper default 1)."""

    def __init__(
        self,
        target_size: tuple[int, int],
        n: int = 16,
        r: int = 1,
        in_channels: int = 3,
        interpolation: str = "bilinear",
        slope: float = 0.2,
    ) -> None:
        super().__init__()
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}"
            )
        if n < 1 or r < 0:
            raise ValueError(f"resizer needs n >= 1 and r >= 0, got n={n}, r={r}")
        self.target_size = (int(target_size[0]), int(target_size[1]))
        self.interpolation = interpolation
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, n, 7, padding=3),
            nn.LeakyReLU(slope),
            nn.Conv2d(n, n, 1),
            nn.LeakyReLU(slope),
            nn.BatchNorm2d(n),
        )
        self.blocks = nn.Sequential(*[ResBlock(n, slope) for _ in range(r)])
        self.fuse = nn.Sequential(nn.Conv2d(n, n, 3, padding=1, bias=False), nn.BatchNorm2d(n))
        self.out = nn.Conv2d(n, in_channels, 7, padding=3)
        # Start as the plain bilinear resize and learn the residual: a random residual on
        # top of the image at step 0 only slows the backbone down.
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None  # a Conv2d made with its bias
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = _resize(x, self.target_size, self.interpolation)
        feats = _resize(self.head(x), self.target_size, self.interpolation)
        y = self.fuse(self.blocks(feats)) + feats
        return self.out(y) + skip
