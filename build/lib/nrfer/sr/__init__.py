"""Super-resolution pre-processing: the paper's offline SR stage, as a cached, checked step.

    python -m nrfer.sr --root data/ferplus --scale 4 --method bicubic --out data/sr-cache/x4
    python -m nrfer.sr.train --root data/ferplus --scale 4 --out weights/face_sr_x4.pt

`upscale` super-resolves uint8 [N, C, H, W] images in batches (bicubic, lanczos, or a learned
model); `nrfer.sr.cache` stores the result per split with a manifest and rebuilds it when
its sources change. A trial config asks for it with `data.sr` (method, scale, weights).
"""

from __future__ import annotations

from nrfer.sr.apply import METHODS, upscale
from nrfer.sr.cache import CacheError, apply_sr, cache_key, ensure_cache, ensure_sr, load_cache

__all__ = [
    "METHODS",
    "CacheError",
    "apply_sr",
    "cache_key",
    "ensure_cache",
    "ensure_sr",
    "load_cache",
    "upscale",
]
