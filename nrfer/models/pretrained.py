"""Pretrained backbone weights, from local files only; nothing is downloaded.

`model.pretrained` is one of
- a weights file (`.safetensors`, `.pth`, `.pt`, `.bin`; timm's or Hugging Face's layout),
- a folder holding one file per backbone name (`<folder>/<backbone>.safetensors`, ...), for
  spaces that search backbones,
- `hub`: timm's own pretrained weights for the backbone name (its default tag, or the tag in
  `name.tag`), read from the local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`) offline.
Loading goes through the model family's own timm `checkpoint_filter_fn` (layout conversion,
position-embedding resampling when `img_size` / `patch_size` differ); the classifier head is
dropped; anything else missing or mismatched is an error, never a silent partial load.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from nrfer.errors import first_line

log = logging.getLogger("nrfer")
HUB = "hub"
SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class PretrainedError(ValueError):
    """Weights that cannot be found or do not fit the backbone; says where it looked."""


def hub_cache_dir() -> Path:
    """Where Hugging Face keeps its cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hub_weights(backbone: str) -> Path:
    """timm's pretrained weights for `backbone` (name or name.tag) in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None or not cfg.hf_hub_id:
        raise PretrainedError(
            f"model.pretrained: hub: timm has no Hugging Face weights for backbone {backbone!r}; "
            "give a local weights file instead"
        )
    cache = hub_cache_dir()
    names = (
        [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    )
    for filename in names:
        found = try_to_load_from_cache(cfg.hf_hub_id, filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
    raise PretrainedError(
        f"model.pretrained: hub: no weights for backbone {backbone!r} in the local Hugging Face "
        f"cache {cache} (looked for {cfg.hf_hub_id}/{' or '.join(names)}); nothing is "
        'downloaded here. On a machine with internet run: python -c "import timm; '
        f"timm.create_model('{backbone}', pretrained=True)\" and copy its cache here "
        "(or point HF_HOME / HF_HUB_CACHE at it)"
    )


def resolve_weights(pretrained: str, backbone: str) -> Path:
    """The file `model.pretrained` names for `backbone`; PretrainedError when there is none."""
    if pretrained == HUB:
        return hub_weights(backbone)
    path = Path(pretrained)
    if path.is_dir():
        stems = dict.fromkeys([backbone, backbone.split(".")[0]])
        candidates = [path / f"{stem}{suffix}" for stem in stems for suffix in SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise PretrainedError(
            f"model.pretrained: folder {path} has no weights for backbone {backbone!r} "
            f"(looked for {', '.join(c.name for c in candidates)})"
        )
    if not path.is_file():
        raise PretrainedError(
            f"model.pretrained: {pretrained!r} is not a weights file, a folder of them or "
            f"'{HUB}' (nothing is downloaded: save the timm weights there, or remove the key "
            "to start from random weights)"
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state: Any  # what the file holds, checked below
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as e:  # a truncated or damaged file (SafetensorError, OSError)
            first = first_line(e)
            raise PretrainedError(f"{path}: not a readable safetensors file: {first}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # pickled code, a truncated file, not a torch file ...
            raise PretrainedError(f"{path}: not a readable weights file: {e}") from None
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f"{path} does not hold a state dict of tensors")
    return dict(state)


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def load_pretrained(model: nn.Module, path: str | Path) -> dict:
    """Load `path` into a headless timm `model` through timm's own filter. Returns what
    happened: {"file", "tensors", "resampled": [...], "dropped": [...]}."""
    path = Path(path)
    state = read_state_dict(path)
    file_shapes = {k: tuple(v.shape) for k, v in state.items()}
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, model)
        except Exception as e:  # timm's converters assume their own architecture's keys
            raise PretrainedError(f"{path}: timm could not adapt it to the backbone: {e}") from None
    own = model.state_dict()
    heads = _classifier_names(model)
    dropped = sorted(
        k for k in state if k not in own and any(k == h or k.startswith(h + ".") for h in heads)
    )
    for k in dropped:
        del state[k]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{what} ({len(keys)}): {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch", mismatched),
            )
            if keys
        ]
        raise PretrainedError(
            f"{path} does not fit backbone {type(model).__name__}: {'; '.join(parts)}"
        )
    model.load_state_dict(state, strict=True)
    resampled = sorted(
        k for k in state if k in file_shapes and file_shapes[k] != tuple(state[k].shape)
    )
    report = {"file": str(path), "tensors": len(state), "resampled": resampled, "dropped": dropped}
    log.info(
        "pretrained: %d tensors from %s; resampled: %s; dropped (head): %s",
        len(state),
        path,
        ", ".join(resampled) or "none",
        ", ".join(dropped) or "none",
    )
    return report
