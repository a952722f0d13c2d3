"""Training checkpoints: written atomically, read with `weights_only=True`, checked to be ours."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "nrfer-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or not an nrfer checkpoint."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt zip, pickle with code in it, truncated file ...
        raise CheckpointError(
            f"{path} is not a readable checkpoint: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nrfer checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})"
        )
    return state
