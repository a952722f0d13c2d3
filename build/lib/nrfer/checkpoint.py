"""Training checkpoints: written atomically, read with `weights_only=True`, checked to be ours."""

from __future__ import annotations

from pathlib import Path

import torch

from nrfer.files import atomic_file

FORMAT = "nrfer-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or not an nrfer checkpoint."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb", fsync=True) as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
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
        # torch's message advises weights_only=False, the unsafe option: leave that out
        reason = " ".join(
            ln.strip() for ln in str(e).splitlines()[:3] if ln.strip() and "weights_only" not in ln
        )
        raise CheckpointError(
            f"{path} is not a readable checkpoint (refused: not a plain tensor file, or "
            f"corrupt): {type(e).__name__}: {reason[:300]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nrfer checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})"
        )
    return state


# What each kind of checkpoint must hold; a file without them gets one error naming it.
REQUIRED = {
    "resume": ("model", "optimizer", "scheduler", "epoch", "best_val_acc", "best_epoch"),
    "model": ("model", "config", "class_names", "input_shape"),
}


def require(state: dict, kind: str, source) -> dict:
    """`state` if it holds what a `kind` checkpoint needs, else a CheckpointError."""
    if kind == "resume" and state.get("kind") == "model":
        raise CheckpointError(
            f"{source}: is a best-model checkpoint (best.pt: weights only); --resume needs the "
            "run's last.pt or its checkpoint folder"
        )
    if kind == "model" and state.get("kind") != "model":
        raise CheckpointError(
            f"{source}: not a model checkpoint (use checkpoint/best.pt of a training run)"
        )
    missing = [k for k in REQUIRED[kind] if k not in state]
    if missing:
        raise CheckpointError(f"{source}: a {kind} checkpoint without {', '.join(missing)}")
    return state


def load_into(target, weights, source, what: str) -> None:
    """`target.load_state_dict(weights)`, or a CheckpointError saying which part of the
    checkpoint does not fit (another architecture, another optimiser, ...)."""
    groups = getattr(target, "param_groups", None)
    if groups is not None and isinstance(weights, dict):  # an optimiser: same kind of settings?
        saved = [set(g) - {"params"} for g in weights.get("param_groups", [])]
        now = [set(g) - {"params"} for g in groups]
        # another optimiser has settings this one lacks and the other way round (a newer torch
        # only adds settings, which load_state_dict fills in)
        if len(saved) != len(now) or any(a - b and b - a for a, b in zip(saved, now, strict=True)):
            raise CheckpointError(
                f"{source}: its {what} does not fit this run's {what} ({type(target).__name__} "
                "settings differ); it was saved with another optimiser config"
            )
    try:
        target.load_state_dict(weights)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            first = f"missing entry {e}"
        raise CheckpointError(
            f"{source}: its {what} does not fit this run's {what} ({first[:300]}); it was saved "
            "with another model or optimiser config"
        ) from None
