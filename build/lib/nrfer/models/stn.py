"""Spatial transformers (Jaderberg et al. 2015) in front of the resizer, as in Hwang et al. 2022.

A small localisation net predicts an affine warp of the input; its last layer starts at
zero weight and identity bias, so training starts from the unwarped image.
- `SpatialTransformer` (model.stn: true): padded convolutions pooled to 4x4, so one net
  serves any input size;
- `PaperSTN` (model.stn: paper): the reference code's net (`models/STN.py` of
  hbin0701/VT_with_NR_for_FER, after the PyTorch tutorial): unpadded conv7 and conv5, an FC
  over the whole feature map, built for one input size (384 px there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpatialTransformer(nn.Module):
    def __init__(self, in_channels: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.loc = nn.Sequential(
            nn.Conv2d(in_channels, 8, 7, padding=3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(8, 10, 5, padding=2),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(10 * 16, hidden),
            nn.ReLU(),
        )
        self.theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        theta = self.theta(self.loc(x)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False, padding_mode="border")


class PaperSTN(nn.Module):
    """The reference implementation's STN, for inputs of `image_size` (h, w)."""

    def __init__(self, image_size: tuple[int, int], in_channels: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        self.loc = nn.Sequential(
            nn.Conv2d(in_channels, 8, 7),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(),
            nn.Conv2d(8, 10, 5),
            nn.MaxPool2d(2, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        fh, fw = (((s - 7 + 1) // 2 - 5 + 1) // 2 for s in self.image_size)
        if fh < 1 or fw < 1:
            raise ValueError(f"model.stn: paper needs inputs of at least 18 px, got {image_size}")
        self.fc = nn.Sequential(nn.Linear(10 * fh * fw, hidden), nn.ReLU())
        self.theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"model.stn: paper was built for {self.image_size} inputs, got {tuple(x.shape[-2:])}"
            )
        theta = self.theta(self.fc(self.loc(x))).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, align_corners=True)
