"""Input pipeline: our batched tensor augmentation vs the paper's per-image PIL pipeline.

    python bench/input_pipeline.py [--n 1024] [--sizes 48 192]

Baseline (the paper's code): PNG files read by a Dataset, PIL -> torchvision transforms
(flip, rotation 45, affine 15 deg / scale 1.2, colour jitter 0.4, to-tensor, normalise),
DataLoader with 2 workers. Ours: the split as one uint8 array, cut into batches and
augmented by nrfer.data.augment on the training device. Same image size, same batch size,
side by side in one process; the figure is images/s and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, record, synthetic_faces  # noqa: E402

from nrfer.config import AugmentConfig  # noqa: E402
from nrfer.data.augment import augment_batch  # noqa: E402


class PngFolder(torch.utils.data.Dataset):
    def __init__(self, files, labels, transform):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB")), int(self.labels[i])


def paper_pipeline(size: int):
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize((size, size)),
            T.RandomHorizontalFlip(),
            T.RandomRotation(45),
            T.RandomAffine(degrees=15, scale=(1.0, 1.2)),
            T.ColorJitter(0.4, 0.4, 0.4),
            T.ToTensor(),
            T.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )


def bench_paper(files, labels, size: int, batch: int) -> float:
    loader = torch.utils.data.DataLoader(
        PngFolder(files, labels, paper_pipeline(size)),
        batch_size=batch,
        shuffle=True,
        num_workers=2,
        persistent_workers=False,
    )
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - t0)


def bench_ours(images: np.ndarray, size: int, batch: int, epochs: int = 3) -> float:
    x = torch.from_numpy(images[:, None])
    if size != x.shape[-1]:  # as an SR cache would hold them: stored once at that size
        x = (
            (torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear"))
            .round()
            .clamp(0, 255)
            .to(torch.uint8)
        )
    cfg = AugmentConfig(rotate_deg=45, scale=0.2, brightness=0.4, contrast=0.4, erase=0.25)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), batch):
            b = x[order[s : s + batch]].float().div_(255)
            out = augment_batch(b, cfg, gen)
            out = (out - 0.5) / 0.5  # normalised; gray stays 1 channel (the model expands it)
            n += len(out)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 192])
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    images, labels = synthetic_faces(args.n)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, img in enumerate(images):
            files.append(Path(d) / f"{i:05d}.png")
            Image.fromarray(img).save(files[-1])
        for size in args.sizes:
            paper = bench_paper(files, labels, size, args.batch)
            ours = bench_ours(images, size, args.batch)
            rows.append(
                {"size": size, "paper_img_s": paper, "ours_img_s": ours, "ratio": ours / paper}
            )
    print_table("input pipeline (images/s, CPU)", rows)
    record("input_pipeline", rows, {"n": len(images), "batch": args.batch})
    return rows


if __name__ == "__main__":
    main()
