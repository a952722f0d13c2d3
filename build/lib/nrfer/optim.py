"""Optimisers and learning-rate schedules by name (the config's optim.name / scheduler.name)."""

from __future__ import annotations

import math

import torch
from torch import nn

from nrfer.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")


@OPTIMIZERS.register("adam")
def adam(params, lr: float, weight_decay: float = 0.0, **_) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float, weight_decay: float = 0.0, **_) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(
    params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, **_
) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
    )


@SCHEDULERS.register("none")
def constant(optimizer, **_):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


@SCHEDULERS.register("step")
def step(optimizer, step_size: int = 15, gamma: float = 0.25, **_):
    """The paper's schedule: StepLR(step_size=15, gamma=0.25), stepped per epoch."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(optimizer, epochs: int, warmup_epochs: int = 0, **_):
    """Linear warmup for `warmup_epochs`, then cosine decay to 0 at the last epoch."""
    warm = warmup_epochs

    def factor(e: int) -> float:
        if e < warm:
            return (e + 1) / (warm + 1)
        progress = (e - warm) / max(1, epochs - warm)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """cfg: OptimConfig. No weight decay on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return OPTIMIZERS.create(
        cfg.name, params=groups, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )


def build_lr_schedule(optimizer, cfg, epochs: int):
    """cfg: SchedulerConfig (the trial's `scheduler:` section), stepped once per epoch."""
    return SCHEDULERS.create(
        cfg.name,
        optimizer=optimizer,
        epochs=epochs,
        step_size=cfg.step_size,
        gamma=cfg.gamma,
        warmup_epochs=cfg.warmup_epochs,
    )
