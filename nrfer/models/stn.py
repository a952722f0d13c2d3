"""Spatial transformer (Jaderberg et al. 2015) in front of the resizer, as in Hwang et al. 2022.

A small localisation net predicts an affine warp of the input; its last layer starts at
zero weight and identity bias, so training starts from the unwarped image.
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
