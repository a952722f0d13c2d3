"""Train our face SR network on a dataset's train split: LR = the face downscaled by `scale`
(bicubic, antialiased), HR = the face itself; L1 loss; PSNR on the val split against bicubic.

    python -m nrfer.sr.train --root data/ferplus --scale 4 --out weights/face_sr_x4.pt
    python -m nrfer.sr --root data/ferplus --scale 4 --method model \
        --weights weights/face_sr_x4.pt --out data/sr-cache/model-x4
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from nrfer.cli import positive_float, positive_int, run_command
from nrfer.data.types import FERData
from nrfer.sr.net import FaceSR, save_sr_weights


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"image size {h}x{w} is not divisible by the scale {scale}")
    return F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def evaluate(model: FaceSR, images: np.ndarray, scale: int, device, batch: int = 256) -> dict:
    """Mean PSNR (dB) of the model and of plain bicubic upsampling on `images`."""
    model.eval()
    sums = {"model": 0.0, "bicubic": 0.0}
    n = 0
    for i in range(0, len(images), batch):
        hr = torch.from_numpy(images[i : i + batch]).to(device).float().div_(255)
        lr = downscale(hr, scale)
        bic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        for name, y in (("model", model(lr)), ("bicubic", bic)):
            sums[name] += psnr(y, hr) * len(hr)
        n += len(hr)
    model.train()
    return {f"psnr_{k}": v / n for k, v in sums.items()}


def train_sr(
    data: FERData,
    scale: int = 4,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-3,
    features: int = 32,
    blocks: int = 4,
    device: str = "auto",
    seed: int = 0,
    log_every: int = 200,
) -> tuple[FaceSR, dict]:
    from nrfer.device import resolve_device

    dev = resolve_device(device, "--device")
    torch.manual_seed(seed)
    images = data.train.images
    model = FaceSR(scale, images.shape[1], features, blocks).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = gen.integers(0, len(images), batch_size)
        hr = torch.from_numpy(images[idx]).to(dev).float().div_(255)
        if gen.random() < 0.5:
            hr = hr.flip(-1)
        loss = F.l1_loss(model(downscale(hr, scale)), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log_every and step % log_every == 0:
            print(f"step {step}/{steps}  l1 {loss.item():.4f}  {time.perf_counter() - t0:.0f}s")
    report = {
        "steps": steps,
        "train_s": time.perf_counter() - t0,
        **evaluate(model, data.val.images, scale, dev),
    }
    report["psnr_gain_db"] = report["psnr_model"] - report["psnr_bicubic"]
    return model, report


def main(argv: list[str] | None = None) -> int:
    from nrfer.parsers import add_sr_data

    ap = argparse.ArgumentParser(prog="python -m nrfer.sr.train", description=__doc__)
    add_sr_data(ap)
    ap.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    ap.add_argument("--out", required=True, help="the weights file to write (.pt)")
    ap.add_argument("--steps", type=positive_int, default=2000)
    ap.add_argument("--batch-size", type=positive_int, default=64)
    ap.add_argument("--lr", type=positive_float, default=1e-3)
    ap.add_argument("--features", type=positive_int, default=32)
    ap.add_argument("--blocks", type=positive_int, default=4)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    return run_command(ap, _train, argv)


def _train(args) -> int:
    from nrfer.sr.__main__ import read_data

    data = read_data(args)
    model, report = train_sr(
        data,
        args.scale,
        args.steps,
        args.batch_size,
        args.lr,
        args.features,
        args.blocks,
        args.device,
        args.seed,
    )
    arch_args = {
        "scale": args.scale,
        "channels": int(data.train.images.shape[1]),
        "features": args.features,
        "blocks": args.blocks,
    }
    save_sr_weights(model.cpu(), "face_sr", arch_args, args.out, source=data.source, **report)
    print(json.dumps({"weights": args.out, **report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
