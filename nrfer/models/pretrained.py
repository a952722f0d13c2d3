"""Pretrained backbone weights, from local files only; trials never download.

`model.pretrained` is one of
- a weights file (`.safetensors`, `.pth`, `.pt`, `.bin`; timm's or Hugging Face's layout),
- a folder holding one file per backbone name (`<folder>/<backbone>.safetensors`, ...), for
  spaces that search backbones,
- `hub`: timm's own pretrained weights for the backbone name (its default tag, or the tag in
  `name.tag`), read from the local Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`) offline;
  `nrfer weights fetch` (`fetch_hub`) fills that cache once, before any trial.
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


def hub_source(backbone: str) -> tuple[str, list[str]]:
    """(Hugging Face repo id, the file names to try) of timm's weights for `backbone`."""
    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None or not cfg.hf_hub_id:
        raise PretrainedError(
            f"model.pretrained: hub: timm has no Hugging Face weights for backbone {backbone!r}; "
            "give a local weights file instead"
        )
    names = (
        [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
    )
    return cfg.hf_hub_id, names


def copy_cache_recipe(flags: str) -> str:
    """How to fill this machine's cache from a machine that has internet (`flags`: what
    `nrfer weights fetch` is given there, e.g. "--space ferplus_vit")."""
    return (
        f"where there is internet, run `nrfer weights fetch {flags}` and copy that machine's "
        f"Hugging Face cache (~/.cache/huggingface/hub) to {hub_cache_dir()}, or point "
        "HF_HOME / HF_HUB_CACHE at the copy"
    )


def hub_weights(backbone: str) -> Path:
    """timm's pretrained weights for `backbone` (name or name.tag) in the local HF cache."""
    from huggingface_hub import try_to_load_from_cache

    repo, names = hub_source(backbone)
    cache = hub_cache_dir()
    for filename in names:
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
    raise PretrainedError(
        f"model.pretrained: hub: no weights for backbone {backbone!r} in the local Hugging Face "
        f"cache {cache} (looked for {repo}/{' or '.join(names)}); trials never download. "
        f"Fetch them once with `nrfer weights fetch --backbone {backbone}`; without internet, "
        + copy_cache_recipe(f"--backbone {backbone}")
    )


class HubUnreachable(PretrainedError):
    """The Hugging Face hub (or `HF_ENDPOINT`) could not be reached; `reason` says why."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def fetch_hub(backbone: str) -> tuple[Path, bool]:
    """timm's weights for `backbone` in the local Hugging Face cache, downloaded there (with
    a progress bar) when missing; returns (file, whether it was downloaded). Called by
    `nrfer weights fetch` only, before any trial: trials read the cache (`hub_weights`).
    HubUnreachable, naming the backbone and how to copy a cache, when the hub cannot be
    reached (asked once, without the retries that would keep an offline user waiting)."""
    try:
        return hub_weights(backbone), False
    except PretrainedError:
        pass
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    repo, names = hub_source(backbone)
    for filename in names:
        try:
            get_hf_file_metadata(hf_hub_url(repo, filename), retry_on_errors=False)
        except EntryNotFoundError:  # the repo holds the other file name
            continue
        except HfHubHTTPError as e:  # no such repo, gated, a server error
            raise PretrainedError(f"{backbone}: {repo}/{filename}: {first_line(e)}") from None
        except Exception as e:  # offline, DNS, a proxy, refused: the HTTP client's own errors
            reason = first_line(e)
            raise HubUnreachable(
                f"{backbone}: the Hugging Face hub could not be reached for {repo}/{filename} "
                f"({reason}); {copy_cache_recipe(f'--backbone {backbone}')}",
                reason,
            ) from None
        return Path(hf_hub_download(repo, filename, cache_dir=hub_cache_dir())), True
    raise PretrainedError(f"{backbone}: {repo} holds none of {', '.join(names)}")


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
