"""Pictures of a model's state, drawn with Pillow: a confusion matrix and the resizer's view.

Written next to the checkpoints whenever validation improves, so trackers can upload them.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def confusion_image(
    conf: list[list[int]] | np.ndarray, class_names: list[str] | tuple[str, ...], cell: int = 44
) -> Image.Image:
    """Row-normalised heat map (rows: true class, columns: predicted) with counts."""
    conf = np.asarray(conf, dtype=np.float64)
    k = len(conf)
    rows = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    margin = 80
    img = Image.new("RGB", (margin + k * cell, margin + k * cell), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i in range(k):
        draw.text((2, margin + i * cell + cell // 3), class_names[i][:11], fill="black", font=font)
        draw.text(
            (margin + i * cell + 2, margin - 14 - 12 * (i % 2)),
            class_names[i][:7],
            fill="black",
            font=font,
        )
        for j in range(k):
            shade = int(255 * (1 - rows[i, j]))
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle(
                [x0, y0, x0 + cell - 1, y0 + cell - 1], fill=(shade, shade, 255), outline="gray"
            )
            draw.text(
                (x0 + 4, y0 + cell // 3),
                str(int(conf[i, j])),
                fill="black" if shade > 100 else "white",
                font=font,
            )
    draw.text((2, 2), "true \\ predicted (row-normalised)", fill="black", font=font)
    return img


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """[3, H, W] float -> [H, W, 3] uint8, stretched per image to the full range."""
    x = x.float()
    x = (x - x.min()) / (x.max() - x.min()).clamp(min=1e-6)
    return (x.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)


@torch.inference_mode()
def resizer_grid(
    model: torch.nn.Module, images: np.ndarray, device: torch.device | str = "cpu"
) -> Image.Image:
    """Each row: the input face (nearest-upscaled to the target size) | what the backbone sees."""
    was_training = model.training
    model.eval()
    x = torch.from_numpy(images).to(device).float() / 255
    seen = model.resize(x)
    th, tw = seen.shape[-2:]
    shown = torch.nn.functional.interpolate(
        x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x, size=(th, tw), mode="nearest"
    )
    rows = [
        np.concatenate([_to_uint8(a), _to_uint8(b)], axis=1)
        for a, b in zip(shown, seen, strict=True)
    ]
    model.train(was_training)
    return Image.fromarray(np.concatenate(rows, axis=0))
