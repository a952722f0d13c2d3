"""What a run trained on, in a few fields: a readable name, a digest of the exact arrays, the
split sizes and the SR stage. MLflow shows it in the runs table's Dataset column
(`sweep.tracking` logs it as a dataset input); reproduce-best and the sweep compare digests.

The digest is taken over the arrays a model sees (every split's images, labels and label
distributions, the class names and label mode), so it changes when a source file changes
in any way that reaches training, and not when the files are only copied or touched. An SR
stage adds its cache's sealed manifest (`manifest_sha256`, which covers every output's
sha256): another method, scale, weights file or rebuilt cache gives another digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from nrfer.data.types import SPLITS, FERData

DIGEST_CHARS = 12


def data_name(data: FERData) -> str:
    """`ferplus-majority`, `synthetic-0-1500-300-300-majority`, `rafdb-majority`, ..."""
    kind, _, where = data.source.partition(":")
    base = Path(where).name if kind == "synthetic" and where else (kind or "data")
    return f"{base}-{data.label_mode}"


def base_digest(data: FERData) -> str:
    """sha256 (hex) of every array the splits hold, before any SR stage."""
    h = hashlib.sha256()
    h.update(json.dumps([list(data.class_names), data.label_mode]).encode())
    for s in SPLITS:
        split = data.split(s)
        for a in (split.images, split.labels, split.targets):
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def identity(data: FERData, base: dict | None = None) -> dict:
    """name, digest, source, profile (split sizes, label mode, SR stage) of `data`.
    `base`: the identity of the same data before its SR stage (computed once by the
    driver; saves hashing the arrays again in every trial)."""
    sr = data.meta.get("sr")
    base = base or _base_identity(data)  # without `base`: over the arrays as they are
    if not sr:
        return base
    return sr_identity(base, sr["method"], sr["scale"], sr, list(data.train.image_size))


def sr_identity(base: dict, method: str, scale: int, manifest: dict, size: list[int]) -> dict:
    """The identity of `base` behind an SR stage whose cache has this sealed `manifest`."""
    seal = manifest["manifest_sha256"]
    digest = hashlib.sha256(f"{base['full_digest']}|{seal}".encode()).hexdigest()
    return {
        "name": f"{base['name']}+sr-{method}-x{scale}",
        "digest": digest[:DIGEST_CHARS],
        "full_digest": digest,
        "source": base["source"],
        "profile": {
            **base["profile"],
            "image_size": list(size),
            "sr": {"method": method, "scale": int(scale), "build_id": manifest["build_id"]},
        },
    }


def _base_identity(data: FERData) -> dict:
    digest = base_digest(data)
    _, _, where = data.source.partition(":")
    return {
        "name": data_name(data),
        "digest": digest[:DIGEST_CHARS],
        "full_digest": digest,
        "source": where or data.source,
        "profile": {
            "splits": {s: len(data.split(s)) for s in SPLITS},
            "label_mode": data.label_mode,
            "classes": len(data.class_names),
            "image_size": list(data.train.image_size),
            "sr": "none",
        },
    }
