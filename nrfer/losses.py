"""Losses by name: ce, ls, pdls, focal, fpdls (Hwang et al. 2022, Sec. 2.3).

All are one form, -sum_k T_k * (1 - p_k)^gamma * log p_k, averaged over the batch, with
    ce:    T = y                      gamma = 0
    ls:    T = (1-eps) y + eps/K      gamma = 0     (label smoothing)
    pdls:  T = alpha y + (1-alpha) yD gamma = 0     (prior-distribution label smoothing)
    focal: T = y                      gamma         (Lin et al. 2017, per class k)
    fpdls: T = alpha y + (1-alpha) yD gamma         (the paper's F-PDLS, alpha=0.8, gamma=2)
where y is one-hot (hard labels) or a label distribution (soft targets), and D is the
K x K prior: row i = mean training vote distribution of the images labelled i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nrfer.registry import Registry

LOSSES: Registry = Registry("loss")
MIN_ONE_MINUS_P = 1e-12  # focal factor floor: finite gradients when a class saturates


class TargetFocalLoss(nn.Module):
    prior: torch.Tensor | None  # a buffer (moves with the module)

    def __init__(
        self,
        num_classes: int,
        gamma: float = 0.0,
        smoothing: float = 0.0,
        alpha: float = 1.0,
        prior: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.num_classes, self.gamma, self.smoothing, self.alpha = (
            num_classes,
            gamma,
            smoothing,
            alpha,
        )
        if prior is not None:
            prior = torch.as_tensor(prior, dtype=torch.float32)
            if prior.shape != (num_classes, num_classes):
                raise ValueError(
                    f"prior must be {num_classes}x{num_classes}, got {tuple(prior.shape)}"
                )
        self.register_buffer("prior", prior)

    def targets(self, target: torch.Tensor) -> torch.Tensor:
        """Hard labels [B] or soft targets [B, K] -> the smoothed target distribution [B, K]."""
        y = F.one_hot(target, self.num_classes).float() if target.dim() == 1 else target.float()
        if self.prior is not None and self.alpha < 1.0:
            y = self.alpha * y + (1 - self.alpha) * (y @ self.prior)
        if self.smoothing > 0:
            y = (1 - self.smoothing) * y + self.smoothing / self.num_classes
        return y

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)  # fp32 whatever the autocast dtype
        weight = self.targets(target)
        if self.gamma > 0:
            # 1 - p as -expm1(log p) (exact near p = 1), floored: the gradient of
            # (1 - p)^gamma is infinite at p = 1 for gamma < 1, and inf * 0 would be NaN
            one_minus_p = (-torch.expm1(log_p)).clamp_min(MIN_ONE_MINUS_P)
            weight = weight * one_minus_p.pow(self.gamma)
        return -(weight * log_p).sum(dim=1).mean()


def _need_prior(name: str, prior) -> torch.Tensor:
    if prior is None:
        raise ValueError(
            f"loss {name!r} needs a prior matrix: training votes or loss.prior in the config"
        )
    return prior


@LOSSES.register("ce")
def cross_entropy(num_classes: int, **_) -> nn.Module:
    return TargetFocalLoss(num_classes)


@LOSSES.register("ls")
def label_smoothing(num_classes: int, smoothing: float = 0.1, **_) -> nn.Module:
    return TargetFocalLoss(num_classes, smoothing=smoothing)


@LOSSES.register("pdls", needs_prior=True)
def pdls(num_classes: int, alpha: float = 0.8, prior=None, **_) -> nn.Module:
    return TargetFocalLoss(num_classes, alpha=alpha, prior=_need_prior("pdls", prior))


@LOSSES.register("focal")
def focal(num_classes: int, gamma: float = 2.0, **_) -> nn.Module:
    return TargetFocalLoss(num_classes, gamma=gamma)


@LOSSES.register("fpdls", needs_prior=True)
def fpdls(num_classes: int, alpha: float = 0.8, gamma: float = 2.0, prior=None, **_) -> nn.Module:
    return TargetFocalLoss(num_classes, gamma=gamma, alpha=alpha, prior=_need_prior("fpdls", prior))


def uses_prior(name: str) -> bool:
    return bool(LOSSES.props(name).get("needs_prior"))
