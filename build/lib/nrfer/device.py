"""Which torch device a setting means: `auto`, `cpu`, `cuda`, `cuda:N`.

Below every other module of nrfer (training, SR, prediction all use it), so none of them
imports the training loop for it.
"""

from __future__ import annotations

import os
import re
import warnings

import torch

from nrfer.errors import ConfigError

_warned_no_cuda = False


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    """auto -> cuda when available, else cpu (with one warning per process, naming
    CUDA_VISIBLE_DEVICES); `key` names the setting in the error."""
    global _warned_no_cuda
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if not _warned_no_cuda:
            _warned_no_cuda = True
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            warnings.warn(
                f"{key} auto: CUDA is not available here"
                + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else "")
                + "; running on the CPU",
                stacklevel=2,
            )
        return torch.device("cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ConfigError(f"{key}: {name!r} is not one of auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key} is {name!r} but CUDA is not available here")
    return torch.device(name)
