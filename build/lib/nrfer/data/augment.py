"""Batched augmentation on the training device: one call per batch, no per-image PIL.

flip, affine (rotation, zoom, shift and the flip in one grid_sample), brightness/contrast,
random erasing (a grey box); every draw comes from the caller's torch.Generator so an epoch is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


@torch.no_grad()
def augment_batch(x: torch.Tensor, cfg, gen: torch.Generator) -> torch.Tensor:
    """x: float [B, C, H, W] in [0, 1] -> augmented batch, same shape. cfg: AugmentConfig."""
    if not cfg.enabled:
        return x
    b, dev = x.shape[0], x.device
    affine = (
        cfg.rotate_deg > 0
        or cfg.rotate_extra_deg > 0
        or cfg.scale > 0
        or cfg.zoom != 1
        or cfg.translate > 0
    )
    flip = torch.rand(b, generator=gen, device=dev) < cfg.flip if cfg.flip > 0 else None
    if flip is not None and not affine:
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if affine:  # rotation, zoom, shift (and the flip, as a sign) in one grid_sample
        angle = _uniform(b, -cfg.rotate_deg, cfg.rotate_deg, gen, dev) * (math.pi / 180)
        if cfg.rotate_extra_deg > 0:  # drawn only when set: default draws stay as they were
            extra = _uniform(b, -cfg.rotate_extra_deg, cfg.rotate_extra_deg, gen, dev)
            angle = angle + extra * (math.pi / 180)
        zoom = _uniform(b, 1 - cfg.scale, 1 + cfg.scale, gen, dev) * cfg.zoom
        shift = _uniform(2 * b, -cfg.translate, cfg.translate, gen, dev).view(b, 2) * 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        mirror = 1.0 - 2.0 * flip.to(cos.dtype) if flip is not None else torch.ones_like(cos)
        theta = torch.stack(
            [
                torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                torch.stack([sin * mirror, cos, shift[:, 1]], 1),
            ],
            1,
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(
            x,
            grid,
            mode=cfg.resample,
            padding_mode="zeros" if cfg.fill == "black" else "border",
            align_corners=False,
        )
    if cfg.brightness > 0 or cfg.contrast > 0:
        gain = _uniform(b, 1 - cfg.contrast, 1 + cfg.contrast, gen, dev).view(b, 1, 1, 1)
        bias = _uniform(b, -cfg.brightness, cfg.brightness, gen, dev).view(b, 1, 1, 1) * 0.5
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * gain + mean + bias).clamp_(0, 1)
    if cfg.erase > 0:  # one box per chosen image, filled with a random grey level
        h, w = x.shape[-2:]
        do = torch.rand(b, generator=gen, device=dev) < cfg.erase
        area = _uniform(b, 0.02, 0.2, gen, dev)
        aspect = torch.exp(_uniform(b, math.log(0.3), math.log(3.3), gen, dev))
        eh = (torch.sqrt(area * aspect) * h).clamp(1, h)
        ew = (torch.sqrt(area / aspect) * w).clamp(1, w)
        y0 = torch.rand(b, generator=gen, device=dev) * (h - eh)
        x0 = torch.rand(b, generator=gen, device=dev) * (w - ew)
        fill = torch.rand(b, generator=gen, device=dev, dtype=x.dtype).view(b, 1, 1, 1)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        rows = (ys >= y0.view(b, 1, 1)) & (ys < (y0 + eh).view(b, 1, 1)) & do.view(b, 1, 1)
        cols = (xs >= x0.view(b, 1, 1)) & (xs < (x0 + ew).view(b, 1, 1))
        x = torch.where((rows & cols)[:, None], fill, x)
    return x
