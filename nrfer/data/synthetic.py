"""Synthetic FER+: procedurally drawn 48x48 faces with noisy crowd votes, in the real format.

    python -m nrfer.data.synthetic --out data/synth --seed 0 --n-train 4000 --n-val 600 --n-test 600

Each face is drawn from its expression (brows, eyes, mouth shape and openness, nose wrinkle,
asymmetry) at a random intensity, pose, scale, lighting and noise; 10 annotator votes are
drawn from a class-confusion prior estimated from the real FER+ votes. The generator writes
Kaggle's `fer2013.csv` and Microsoft's `fer2013new.csv`, so it is read by the real reader and
the real FERPlus label rules decide which faces are kept. Deterministic by seed.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from nrfer.data.ferplus import FER_SIZE, PIXELS_CSV, PIXELS_HEADER, VOTES_CSV, VOTES_HEADER
from nrfer.data.labels import VOTE_PRIOR
from nrfer.data.splits import names_of_split
from nrfer.data.types import EMOTIONS

# Real FER+ majority-label class frequencies (same file); the generator samples classes
# with their square root so that rare classes (disgust, contempt) still appear in small sets.
CLASS_FREQ = np.array([0.3506, 0.2879, 0.1261, 0.1193, 0.0847, 0.0051, 0.0216, 0.0047])
# 2: faces carry Microsoft's names of their split (1: fer<row>.png, whatever the split)
VERSION, VERSION_FILE = 2, "synthetic_version.txt"
NOT_A_FACE_RATE = 0.005  # real file: 173 of 35,887 rows are not faces (empty name, 10 NF votes)
# Kaggle FER2013's 7-class `emotion` column for each of our classes (contempt -> neutral).
FER2013_EMOTION = (6, 3, 5, 4, 0, 1, 2, 6)

# Expression geometry: offsets from the neutral face at full intensity (face coordinates,
# x right, y down, face half-height ~1). Keys: see _NEUTRAL.
_NEUTRAL = dict(
    brow_raise=0.0,
    brow_tilt=0.0,
    eye_open=1.0,
    curve=0.0,
    mouth_open=0.0,
    mouth_width=0.28,
    asym=0.0,
    wrinkle=0.0,
)
_SHAPES: dict[str, dict[str, float]] = {
    "neutral": {},
    "happiness": dict(curve=0.10, mouth_width=0.08, mouth_open=0.05, eye_open=-0.30),
    "surprise": dict(brow_raise=0.10, eye_open=0.60, mouth_open=0.22, mouth_width=-0.12),
    "sadness": dict(brow_tilt=0.09, brow_raise=0.02, curve=-0.08, eye_open=-0.25),
    "anger": dict(
        brow_tilt=-0.10, brow_raise=-0.05, eye_open=-0.10, curve=-0.03, mouth_width=-0.05
    ),
    "disgust": dict(
        brow_raise=-0.04, brow_tilt=-0.04, wrinkle=1.0, mouth_open=0.05, curve=-0.06, eye_open=-0.40
    ),
    "fear": dict(
        brow_raise=0.07,
        brow_tilt=0.08,
        eye_open=0.50,
        mouth_open=0.09,
        mouth_width=0.06,
        curve=-0.04,
    ),
    "contempt": dict(asym=0.09, eye_open=-0.10),
}


def sample_expression_params(
    classes: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per-image geometry: neutral + intensity * expression offset + jitter. Arrays [B,1,1]."""
    b = len(classes)
    intensity = np.where(classes == 0, 0.0, rng.uniform(0.35, 1.0, b))
    params = {}
    for key, base in _NEUTRAL.items():
        delta = np.array([_SHAPES[EMOTIONS[c]].get(key, 0.0) for c in classes])
        jitter = {"eye_open": 0.12, "mouth_width": 0.02, "wrinkle": 0.0}.get(key, 0.015)
        params[key] = (base + intensity * delta + rng.normal(0, jitter, b)).astype(np.float32)[
            :, None, None
        ]
    params["eye_open"] = np.clip(params["eye_open"], 0.25, None)
    params["mouth_open"] = np.clip(params["mouth_open"], 0.0, None)
    return params


def _segment_distance(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def render_faces(classes: np.ndarray, rng: np.random.Generator, size: int = FER_SIZE) -> np.ndarray:
    """Draw one face per class index -> uint8 [B, size, size]. Rendered at 2x, then averaged."""
    b, hi = len(classes), 2 * size
    p = sample_expression_params(classes, rng)
    col = lambda a: np.asarray(a, dtype=np.float32)[:, None, None]  # noqa: E731
    # Pose: rotation, scale, shift; (u, v) are face coordinates of each pixel.
    theta = col(np.deg2rad(rng.normal(0, 9, b)))
    scale = col(rng.uniform(0.82, 1.08, b))
    tx, ty = col(rng.normal(0, 0.05, b)), col(rng.normal(0, 0.05, b))
    grid = ((np.arange(hi) + 0.5) / hi * 2 - 1).astype(np.float32)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    gx, gy = (gx[None] - tx) / scale, (gy[None] - ty) / scale
    u = np.cos(theta) * gx + np.sin(theta) * gy
    v = -np.sin(theta) * gx + np.cos(theta) * gy

    img = col(rng.uniform(0.15, 0.6, b)) + col(rng.normal(0, 0.1, b)) * u  # background
    face = (u / 0.74) ** 2 + (v / 0.92) ** 2 < 1
    skin = col(rng.uniform(0.55, 0.85, b))
    img = np.where(face, skin + 0.05 * v, img)
    hair = face & (v < -0.62 + 0.08 * np.cos(3 * u))
    img = np.where(hair, col(rng.uniform(0.05, 0.35, b)), img)

    dark = np.zeros_like(img)  # how much each feature darkens the skin (max over features)
    for side in (-1.0, 1.0):
        ex, ey = side * 0.30, -0.18
        eye = ((u - ex) / 0.13) ** 2 + ((v - ey) / (0.055 * p["eye_open"])) ** 2 < 1
        dark = np.maximum(dark, 0.75 * eye)
        # Brows: the inner end (towards x=0) moves by tilt, both ends by raise.
        by = -0.36 - p["brow_raise"]
        inner_y, outer_y = by - p["brow_tilt"], by + 0.3 * p["brow_tilt"]
        d = _segment_distance(u, v, side * 0.14, inner_y, side * 0.44, outer_y)
        dark = np.maximum(dark, 0.7 * (d < 0.028))
        # Disgust wrinkles beside the nose.
        d = _segment_distance(u, v, side * 0.05, 0.02, side * 0.15, 0.08)
        dark = np.maximum(dark, 0.5 * p["wrinkle"] * (d < 0.018))
    dark = np.maximum(dark, 0.35 * (_segment_distance(u, v, 0.0, -0.08, 0.0, 0.18) < 0.02))

    # Mouth: centre line y = my - curve*(x/w)^2 - asym*max(x/w, 0)^2, lips open by mouth_open.
    w = np.clip(p["mouth_width"], 0.12, None)
    xr = u / w
    inside = np.abs(xr) < 1
    mid = 0.45 - p["curve"] * xr**2 - p["asym"] * np.clip(xr, 0, None) ** 2
    half_open = 0.5 * p["mouth_open"] * np.clip(1 - xr**2, 0, None)
    lips = inside & (
        (np.abs(v - (mid - half_open)) < 0.025) | (np.abs(v - (mid + half_open)) < 0.025)
    )
    cavity = inside & (np.abs(v - mid) < half_open)
    dark = np.maximum(dark, 0.65 * lips)
    dark = np.maximum(dark, 0.85 * cavity)
    img = np.where(face, img * (1 - dark), img)

    # Lighting and sensor noise.
    img = img * col(rng.uniform(0.7, 1.25, b)) + col(rng.normal(0, 0.06, b))
    img = img + col(rng.normal(0, 0.12, b)) * gx + col(rng.normal(0, 0.08, b)) * gy
    img = img.reshape(b, size, 2, size, 2).mean(axis=(2, 4))
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * col(rng.uniform(0.01, 0.05, b))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def sample_votes(classes: np.ndarray, rng: np.random.Generator, n_votes: int = 10) -> np.ndarray:
    prior = VOTE_PRIOR / VOTE_PRIOR.sum(axis=1, keepdims=True)
    return np.stack([rng.multinomial(n_votes, prior[c]) for c in classes])


def generate(seed: int, n_train: int, n_val: int, n_test: int) -> dict[str, np.ndarray | list]:
    """-> arrays in file order: usage, images [N,48,48], votes [N,10], true classes (-1: not a face)."""
    rng = np.random.default_rng(seed)
    usage = ["Training"] * n_train + ["PublicTest"] * n_val + ["PrivateTest"] * n_test
    n = len(usage)
    weights = np.sqrt(CLASS_FREQ) / np.sqrt(CLASS_FREQ).sum()
    classes = rng.choice(len(EMOTIONS), size=n, p=weights)
    not_face = rng.random(n) < NOT_A_FACE_RATE
    images = (
        np.concatenate([render_faces(classes[i : i + 256], rng) for i in range(0, n, 256)])
        if n
        else np.zeros((0, FER_SIZE, FER_SIZE), np.uint8)
    )
    votes = sample_votes(classes, rng) if n else np.zeros((0, 10), np.int64)
    if not_face.any():
        images[not_face] = rng.integers(
            0, 256, (int(not_face.sum()), FER_SIZE, FER_SIZE), dtype=np.uint8
        )
        votes[not_face] = 0
        votes[not_face, -1] = 10
    classes = np.where(not_face, -1, classes)
    return {"usage": usage, "images": images, "votes": votes, "classes": classes}


def write_ferplus(
    out: str | Path, seed: int = 0, n_train: int = 4000, n_val: int = 600, n_test: int = 600
) -> Path:
    """Write fer2013.csv + fer2013new.csv into `out` atomically (a temp dir, then rename)."""
    out = Path(out)
    names = face_names(n_train, n_val, n_test)
    gen = generate(seed, n_train, n_val, n_test)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with open(tmp / PIXELS_CSV, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(PIXELS_HEADER)
            for img, usage, c in zip(gen["images"], gen["usage"], gen["classes"], strict=True):
                w.writerow(
                    [
                        FER2013_EMOTION[c] if c >= 0 else 6,
                        " ".join(map(str, img.ravel().tolist())),
                        usage,
                    ]
                )
        with open(tmp / VOTES_CSV, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(VOTES_HEADER)
            for usage, name, votes, c in zip(
                gen["usage"], names, gen["votes"], gen["classes"], strict=True
            ):
                w.writerow([usage, name if c >= 0 else "", *votes.tolist()])
        (tmp / VERSION_FILE).write_text(f"{VERSION}\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def face_names(n_train: int, n_val: int, n_test: int) -> list[str]:
    """Microsoft's own names for the generated rows, split by split (the first n_train
    Training names, then PublicTest's, then PrivateTest's), so that a synthetic face's name
    says its FER2013 split as a real one's does."""
    out: list[str] = []
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        names = names_of_split(split)
        if n > len(names):
            raise ValueError(
                f"synthetic {split} size {n} is larger than FER2013's {len(names)} named faces "
                "of that split"
            )
        out.extend(names[:n])
    return out


def ensure_synthetic(root: str | Path, seed: int, n_train: int, n_val: int, n_test: int) -> Path:
    """Generate once into `root` (files are deterministic by seed and sizes) and reuse after;
    a cache written by an older generator (other names) is written anew."""
    root = Path(root)
    stamp = root / VERSION_FILE
    current = stamp.is_file() and stamp.read_text().strip() == str(VERSION)
    if not (current and (root / PIXELS_CSV).is_file() and (root / VOTES_CSV).is_file()):
        write_ferplus(root, seed, n_train, n_val, n_test)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, help="folder to write fer2013.csv and fer2013new.csv into"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-val", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=600)
    args = parser.parse_args(argv)
    for name in ("n_train", "n_val", "n_test"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    try:
        out = write_ferplus(args.out, args.seed, args.n_train, args.n_val, args.n_test)
    except ValueError as e:
        parser.error(str(e))
    print(
        f"wrote {out / PIXELS_CSV} and {out / VOTES_CSV} ({args.n_train}/{args.n_val}/{args.n_test} rows)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
