"""What several test files share (imported as `from helpers import ...`; fixtures stay in
conftest.py): the repository's paths and a tiny sweep space that runs in seconds."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_VOTES = REPO.parent / "shared" / "data" / "ferplus" / "fer2013new.csv"

TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2}


def tiny_space(
    name: str,
    root,
    *,
    search: dict,
    scheduler: dict,
    budget: dict,
    resizer: dict | None = None,
    seed: int = 0,
) -> dict:
    """A sweep space over a one-block ViT at 32 px on the small synthetic set: seconds per trial."""
    model = {"backbone": "vit_tiny_patch16_224", "backbone_args": dict(TINY_VIT)}
    if resizer is not None:
        model["resizer"] = resizer
    return {
        "name": name,
        "seed": seed,
        "data": {"dataset": "synthetic", "root": str(root)},
        "fixed": {"model": model, "train": {"batch_size": 64, "device": "cpu"}},
        "search": search,
        "early_stopping": scheduler,
        "budget": budget,
        "resources": {"cpu": 1},
    }


def write_rafdb(root, n_per_class: int = 3):
    """RAF-DB's released layout: EmoLabel/list_patition_label.txt + Image/aligned/*.jpg."""
    import numpy as np
    from PIL import Image

    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    rng = np.random.default_rng(1)
    lines = []
    for split in ("train", "test"):
        for label in range(1, 8):  # RAF-DB's 1..7
            for i in range(n_per_class):
                name = f"{split}_{label}{i:04d}.jpg"
                face = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
                aligned = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
                Image.fromarray(face).save(aligned)
                lines.append(f"{name} {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root
