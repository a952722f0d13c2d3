"""Upscaling a uint8 image array: bicubic / lanczos (Pillow) or a learned SR model (torch)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

METHODS = ("bicubic", "lanczos", "model")
PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


class Progress:
    """One stderr line: done/total, images/s, ETA (redrawn at most 4 times a second)."""

    def __init__(self, total: int, label: str, stream=sys.stderr) -> None:
        self.total, self.label, self.stream = total, label, stream
        self.t0 = self.last = time.perf_counter()
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < 0.25 and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.stream.write(
            f"\r{self.label}: {self.done}/{self.total} images, {rate:,.0f} img/s, ETA {eta:,.0f} s "
        )
        if self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _pil(images: np.ndarray, scale: int, method: str) -> np.ndarray:
    n, c, h, w = images.shape
    out = np.empty((n, c, h * scale, w * scale), np.uint8)
    for i in range(n):
        for ch in range(c):
            img = Image.fromarray(images[i, ch]).resize((w * scale, h * scale), PIL_FILTERS[method])
            out[i, ch] = np.asarray(img)
    return out


@torch.no_grad()
def _model(images: np.ndarray, model, device: torch.device) -> np.ndarray:
    """Gray images through a 3-channel model (e.g. DIC, RGB) are replicated, then averaged."""
    x = torch.from_numpy(images).to(device).float().div_(255)
    channels = getattr(model, "channels", None)
    if channels == 3 and x.shape[1] == 1:
        y = model(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
    else:
        try:
            y = model(x)
        except RuntimeError:  # a TorchScript RGB model fed one channel
            if x.shape[1] != 1:
                raise
            y = model(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
    return y.clamp_(0, 1).mul_(255).round_().to(torch.uint8).cpu().numpy()


def upscale(
    images: np.ndarray,
    scale: int,
    method: str,
    model=None,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, C, H*scale, W*scale]."""
    if method not in METHODS:
        raise ValueError(f"unknown SR method {method!r}; valid: {', '.join(METHODS)}")
    if method == "model" and model is None:
        raise ValueError("method 'model' needs a loaded SR model")
    n, c, h, w = images.shape
    out = np.empty((n, c, h * scale, w * scale), np.uint8)
    device = torch.device(device)
    for i in range(0, n, batch_size):
        batch = images[i : i + batch_size]
        if method == "model":
            y = _model(batch, model, device)
            if y.shape[-2:] != (h * scale, w * scale):
                raise ValueError(
                    f"the SR model turned {h}x{w} into {y.shape[-2]}x{y.shape[-1]}, "
                    f"not x{scale} ({h * scale}x{w * scale}): check --scale against the model"
                )
            out[i : i + len(batch)] = y
        else:
            out[i : i + len(batch)] = _pil(batch, scale, method)
        if progress is not None:
            progress(len(batch))
    return out
