"""The SR cache: one uint8 array per split plus a manifest, rebuilt whenever it does not match.

    <cache>/train.npy, val.npy, test.npy   uint8 [N, C, H*s, W*s]
    <cache>/manifest.json                  method, scale, weights file + sha256, the sha256 of
                                           every source file and of every input split, a
                                           build id, time and speed

A cache is reused only when its manifest records the same method, scale, weights hash and
input hashes as the data at hand; otherwise it is rebuilt in place (under a file lock, so
two processes never build the same cache at once). The manifest is written last: a build
that was interrupted leaves no manifest and is rebuilt.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from nrfer.data.types import SPLITS, FERData
from nrfer.device import resolve_device
from nrfer.files import atomic_file, write_atomic
from nrfer.sr.apply import Progress, upscale
from nrfer.sr.net import load_sr_model

FORMAT, VERSION = "nrfer-sr-cache", 1
DEFAULT_CACHE_DIR = "data/sr-cache"
log = logging.getLogger("nrfer.sr")


class CacheError(ValueError):
    """An SR cache that cannot be built or read; names the folder and what is wrong."""


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def expected(data: FERData, method: str, scale: int, weights: str | None) -> dict:
    """The part of a manifest that decides whether a cache may be reused."""
    sources = {str(p): file_sha256(p) for p in data.meta.get("source_files", [])}
    return {
        "format": FORMAT,
        "version": VERSION,
        "method": method,
        "scale": int(scale),
        "weights_sha256": file_sha256(weights) if method == "model" and weights else None,
        "sources": sources,
        "inputs": {
            s: {
                "sha256": array_sha256(data.split(s).images),
                "shape": list(data.split(s).images.shape),
            }
            for s in SPLITS
        },
    }


def cache_key(data: FERData, method: str, scale: int, weights: str | None) -> str:
    """A folder name per (dataset, method, scale, weights): e.g. `bicubic-x4-1a2b3c4d5e`."""
    ident = f"{data.source}|{method}|{scale}|{Path(weights).resolve() if weights else ''}"
    return f"{method}-x{scale}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def seal(manifest: dict) -> dict:
    """`manifest` with `manifest_sha256`: a hash of all its other fields, so a hand edit
    (say, `method: lanczos` on a bicubic cache) is seen."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "manifest_sha256": digest}


def verified_outputs(folder: Path, manifest: dict) -> tuple[dict[str, np.ndarray], str | None]:
    """The cache's arrays, and why they are not what was built (None when they are): the
    manifest's own hash, then each output's presence, shape and sha256."""
    if seal(manifest).get("manifest_sha256") != manifest.get("manifest_sha256"):
        return {}, "manifest.json was edited after the build (its manifest_sha256 does not match)"
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or any(
        not isinstance(outputs.get(s), dict) or not {"file", "shape", "sha256"} <= set(outputs[s])
        for s in SPLITS
    ):
        return {}, f"manifest.json lacks outputs.<split>.file/shape/sha256 for {', '.join(SPLITS)}"
    arrays = {}
    for s in SPLITS:
        path = folder / str(outputs[s]["file"])
        try:
            a = arrays[s] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            return {}, f"{path.name} is unreadable ({e})"
        if list(a.shape) != outputs[s]["shape"]:
            return (
                {},
                f"{path.name} has shape {list(a.shape)}, the manifest says {outputs[s]['shape']}",
            )
        if array_sha256(a) != outputs[s]["sha256"]:
            return {}, f"{path.name} was changed after the build (its sha256 is not the manifest's)"
    return arrays, None


def mismatch(manifest: dict | None, want: dict, folder: Path | None = None) -> str | None:
    """Why a cache cannot be reused (None when it can)."""
    if manifest is None:
        return "no manifest"
    for key, value in want.items():
        if manifest.get(key) != value:
            return f"{key} differs"
    return verified_outputs(folder, manifest)[1] if folder is not None else None


@contextmanager
def locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_cache(
    data: FERData,
    method: str,
    scale: int,
    out: str | Path,
    weights: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    show_progress: bool = True,
) -> tuple[Path, dict, bool]:
    """Reuse the cache in `out` if its manifest matches `data`, else build it.
    Returns (folder, manifest, built)."""
    out = Path(out)
    if method == "model" and not (weights and Path(weights).is_file()):
        raise CacheError(f"SR method 'model' needs a weights file; got {weights!r}")
    want = expected(data, method, scale, weights)
    with locked(out):
        manifest = read_manifest(out)
        why = mismatch(manifest, want, out)
        if why is None and manifest is not None:
            return out, manifest, False
        log.warning("building SR cache %s (%s)", out, why)
        (out / "manifest.json").unlink(missing_ok=True)
        model = None
        dev = resolve_device(device, "data.sr.device")
        if method == "model" and weights:  # (checked above)
            model = load_sr_model(weights, dev)
        total = sum(len(data.split(s)) for s in SPLITS)
        bar = Progress(total, f"SR {method} x{scale}") if show_progress else None
        t0 = time.perf_counter()
        outputs = {}
        for s in SPLITS:
            images = upscale(
                data.split(s).images,
                scale,
                method,
                model=model,
                device=dev,
                batch_size=batch_size,
                progress=bar.update if bar else None,
            )
            with atomic_file(out / f"{s}.npy", "wb") as f:
                np.save(f, images)
            outputs[s] = {
                "file": f"{s}.npy",
                "shape": list(images.shape),
                "sha256": array_sha256(images),
            }
        seconds = time.perf_counter() - t0
        manifest = seal(
            {
                **want,
                "weights": str(Path(weights).resolve()) if weights else None,
                "outputs": outputs,
                "build_id": uuid.uuid4().hex,
                "built_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "seconds": seconds,
                "images_per_s": total / max(seconds, 1e-9),
                "device": str(dev),
            }
        )
        write_atomic(out / "manifest.json", json.dumps(manifest, indent=1))
        return out, manifest, True


def load_cache(folder: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("format") != FORMAT:
        raise CacheError(f"{folder} is not an SR cache (no valid manifest.json)")
    arrays, why = verified_outputs(folder, manifest)
    if why:
        raise CacheError(
            f"SR cache {folder}: {why}; delete the folder (or run python -m nrfer.sr) to rebuild it"
        )
    return arrays, manifest


def ensure_sr(data: FERData, sr_cfg, show_progress: bool = True) -> tuple[Path, dict, bool]:
    """The cache of `sr_cfg` for `data` under its cache_dir (built if needed): ensure_cache
    in the folder `cache_key` names. sr_cfg: nrfer.config.SRConfig (method not none)."""
    root = Path(sr_cfg.cache_dir or DEFAULT_CACHE_DIR)
    return ensure_cache(
        data,
        sr_cfg.method,
        sr_cfg.scale,
        root / cache_key(data, sr_cfg.method, sr_cfg.scale, sr_cfg.weights),
        sr_cfg.weights,
        sr_cfg.device,
        sr_cfg.batch_size,
        show_progress,
    )


def apply_sr(data: FERData, sr_cfg, show_progress: bool = True) -> FERData:
    """`data` with every split's images replaced by their SR version (cache built if needed).
    sr_cfg: nrfer.config.SRConfig."""
    if sr_cfg.method == "none":
        return data
    folder, _, built = ensure_sr(data, sr_cfg, show_progress)
    arrays, manifest = load_cache(folder)
    splits = {s: replace(data.split(s), images=arrays[s]) for s in SPLITS}
    meta = {
        **data.meta,
        "sr": {
            "dir": str(folder),
            "build_id": manifest["build_id"],
            "built": built,
            "method": sr_cfg.method,
            "scale": int(sr_cfg.scale),
            "manifest_sha256": manifest["manifest_sha256"],
        },
    }
    return replace(data, train=splits["train"], val=splits["val"], test=splits["test"], meta=meta)
