"""Our learned face super-resolution network and how SR models are loaded.

`FaceSR` predicts a residual on top of bicubic upsampling (its last conv starts at zero, so an
untrained net *is* bicubic): a conv head, residual blocks at the low resolution, one
conv + PixelShuffle(2) stage per factor of 2, a conv tail. Small enough to train on the
FER+ train split in minutes on a GPU (LR = the 48 px face downscaled, HR = the face).

Loading (`load_sr_model`): a TorchScript file (e.g. the DIC face-SR model exported with
`torch.jit.trace`; a TorchScript file is code: load only files you trust), or a state-dict
file written by `save_sr_weights` for an architecture in `SR_ARCHS` (read with
`weights_only=True` and checked to be ours).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nrfer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nrfer.registry import Registry

SR_ARCHS: Registry = Registry("super-resolution architecture")
SCALES = (2, 4, 8)


class ResBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.body(x)


@SR_ARCHS.register("face_sr")
class FaceSR(nn.Module):
    """x2/x4/x8 SR of [B, C, H, W] images in [0, 1] -> [B, C, H*s, W*s]."""

    def __init__(self, scale: int = 4, channels: int = 1, features: int = 32, blocks: int = 4):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale}")
        self.scale, self.channels = scale, channels
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(features) for _ in range(blocks)])
        up = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2), nn.ReLU()]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(features, channels, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        assert self.tail.bias is not None  # a Conv2d made with its bias
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        feats = self.head(x)
        return base + self.tail(self.up(feats + self.body(feats)))


def save_sr_weights(model: nn.Module, arch: str, args: dict, path: str | Path, **info) -> Path:
    return save_checkpoint(
        {"kind": "sr", "arch": arch, "args": args, "model": model.state_dict(), "info": info},
        path,
    )


def load_sr_model(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A TorchScript SR model or one of our SR weight files, in eval mode on `device`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"SR weights {path} do not exist")
    try:
        state = load_checkpoint(path, map_location="cpu")
    except CheckpointError as ours_error:
        try:  # not one of ours: maybe a TorchScript export (e.g. DIC)
            model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise CheckpointError(
                f"{path} is neither an nrfer SR weights file ({ours_error}) nor a TorchScript "
                f"file ({type(e).__name__}: {e})"
            ) from None
        return model.eval().to(device)
    if state.get("kind") != "sr":
        raise CheckpointError(f"{path} is an nrfer checkpoint but not SR weights")
    if state.get("arch") not in SR_ARCHS:
        raise CheckpointError(
            f"{path}: unknown SR architecture {state.get('arch')!r}; known: {SR_ARCHS.names()}"
        )
    model = SR_ARCHS.create(state["arch"], **state["args"])
    model.load_state_dict(state["model"])
    return model.eval().to(device)
