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
