"""Shared bits of the benchmarks: timing, the results file, a synthetic image set."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).with_name("results.json")


def timed(fn, repeat: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def synthetic_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 48x48 faces and their classes, straight from the generator (no files)."""
    from nrfer.data.synthetic import generate

    g = generate(seed, n, 0, 0)
    keep = g["classes"] >= 0
    return g["images"][keep], g["classes"][keep]


def record(section: str, rows: list[dict], meta: dict | None = None) -> None:
    """Merge one benchmark's rows into bench/results.json."""
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[section] = {
        "rows": rows,
        "meta": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            **(meta or {}),
        },
    }
    RESULTS.write_text(json.dumps(data, indent=1))


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n== {title}")
    if not rows:
        return
    keys = list(rows[0])
    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True)))
    for r in rows:
        print("  ".join(fmt(r[k]).rjust(w) for k, w in zip(keys, widths, strict=True)))


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
