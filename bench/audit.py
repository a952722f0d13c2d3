"""The leakage audit at FER2013's size: 35,887 synthetic faces (48x48) with twins planted
across splits under the transformations a real dataset has, timed; recall of the planted
pairs per transformation; false pairs; and the ratio against comparing all pairs on a subset.

    python bench/audit.py                     # 35,887 faces, 600 planted twins per kind
    python bench/audit.py --faces 4000 --naive 2000

A false pair is a found pair that was not planted (nor between two copies of one face). On
the synthetic faces, which are drawn from a few parameters, two different draws can be
nearly the same picture; the real-photo rate is in tests/nrfer/test_audit.py.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nrfer.data import audit as A  # noqa: E402


def jpeg(face: np.ndarray, quality: int = 30) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(face).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def resized(face: np.ndarray) -> np.ndarray:
    from PIL import Image

    big = Image.fromarray(face).resize((100, 100), Image.Resampling.BICUBIC)
    return np.asarray(big.resize(face.shape[::-1], Image.Resampling.BICUBIC))


def brightness(face: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(face.astype(np.float32) * factor + 0.5, 0, 255).astype(np.uint8)


def shift(face: np.ndarray, dx: int = 2, dy: int = 0) -> np.ndarray:
    return A.shifted(face[None], dx, dy)[0]


# What a real dataset does to a face it holds twice.
TRANSFORMS = {
    "identical": lambda f, rng: f.copy(),
    "jpeg30": lambda f, rng: jpeg(f),
    "resize100": lambda f, rng: resized(f),
    "shift2": lambda f, rng: shift(
        f, *[(2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (-2, 1)][rng.integers(6)]
    ),
    "brighter20": lambda f, rng: brightness(f, 1.2),
    "darker20": lambda f, rng: brightness(f, 0.8),
    "mirrored": lambda f, rng: f[:, ::-1].copy(),
}


def plant(
    splits: dict[str, np.ndarray], per_kind: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], list[tuple[str, int, str, int, str]]]:
    """Copies of `per_kind` faces per transformation, each a face of one split put into
    another (train -> test, train -> val, val -> test, in turn), replacing a face there.
    Returns the new splits and (split_a, index_a, split_b, index_b, kind) per planted pair."""
    rng = np.random.default_rng(seed)
    out = {k: v.copy() for k, v in splits.items()}
    routes = [("train", "test"), ("train", "val"), ("val", "test")]
    used = {k: set() for k in out}
    planted = []
    for kind, fn in TRANSFORMS.items():
        for n in range(per_kind):
            src, dst = routes[n % len(routes)]
            i, j = _free(rng, len(out[src]), used[src]), _free(rng, len(out[dst]), used[dst])
            used[src].add(i)
            used[dst].add(j)
            out[dst][j] = fn(out[src][i], rng)
            planted.append((src, i, dst, j, kind))
    return out, planted


def _free(rng, n: int, used: set) -> int:
    if len(used) >= n:
        raise ValueError(f"too many twins to plant: all {n} faces of a split are used")
    while True:
        k = int(rng.integers(n))
        if k not in used:
            return k


def plant_in_ferplus(
    root: Path, out: Path, per_kind: int, kinds=("identical", "jpeg30", "mirrored")
):
    """A copy of the FER+ files at `root` (fer2013.csv + fer2013new.csv) in `out` with test
    rows replaced by train rows under each of `kinds`, `per_kind` each, votes and all (a
    duplicate carries its label). Returns (train face, test face, kind) per planted row."""
    import csv
    import shutil

    shutil.copytree(root, out)
    rng = np.random.default_rng(0)
    with open(out / "fer2013.csv", newline="") as f:
        pixels = list(csv.reader(f))
    with open(out / "fer2013new.csv", newline="") as f:
        votes = list(csv.reader(f))
    col, usage = pixels[0].index("pixels"), pixels[0].index("Usage")
    train = [k for k, r in enumerate(pixels) if k and r[usage] == "Training"]
    test = [k for k, r in enumerate(pixels) if k and r[usage] == "PrivateTest"]
    src = rng.choice(train, per_kind * len(kinds), replace=False)
    dst = rng.choice(test, per_kind * len(kinds), replace=False)
    planted = []
    for n, (a, b) in enumerate(zip(src, dst, strict=True)):
        kind = kinds[n // per_kind]
        face = np.array(pixels[a][col].split(), dtype=np.uint8).reshape(48, 48)
        twin = TRANSFORMS[kind](face, rng)
        pixels[b][col] = " ".join(str(v) for v in twin.ravel())
        pixels[b][0] = pixels[a][0]
        votes[b][2:] = votes[a][2:]  # Usage and Image name stay the test row's
        planted.append((face, twin, kind))
    for name, rows in (("fer2013.csv", pixels), ("fer2013new.csv", votes)):
        with open(out / name, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return planted


def score(result: A.Audit, planted) -> dict:
    """Recall per transformation and the pairs found that were not planted."""
    faces = result.faces
    found = {
        frozenset(
            (
                (faces.splits[p.a], int(faces.indices[p.a])),
                (faces.splits[p.b], int(faces.indices[p.b])),
            )
        )
        for p in result.pairs
    }
    recall: dict[str, list[int]] = {}
    planted_keys = set()
    for sa, ia, sb, ib, kind in planted:
        key = frozenset(((sa, ia), (sb, ib)))
        planted_keys.add(key)
        recall.setdefault(kind, []).append(key in found)
    false = [k for k in found if k not in planted_keys]
    return {
        "recall": {k: round(float(np.mean(v)), 4) for k, v in recall.items()},
        "recall_all": round(float(np.mean([x for v in recall.values() for x in v])), 4),
        "false_pairs": len(false),
        "false_pair_rate": round(len(false) / len(faces), 5),
    }


def synthetic_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    from nrfer.data.synthetic import render_faces

    rng = np.random.default_rng(seed)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {k: render_faces(rng.integers(0, 8, n), rng) for k, n in sizes.items()}


def naive_pairs(faces: A.Faces, min_correlation: float = A.MIN_CORRELATION) -> tuple[int, float]:
    """All pairs, each aligned every way the audit aligns (as is, mirrored, every shift),
    by the same pixel check: the pairs found and the seconds it took."""
    start = time.perf_counter()
    pixels = A._Pixels.of(faces.images)
    n = len(faces)
    a, b = np.triu_indices(n, 1)
    found = set()
    transforms = [None, "mirror", *A.OFFSETS, *[(-dx, -dy) for dx, dy in A.OFFSETS]]
    for t in transforms:
        for s in range(0, len(a), 8192):
            x, y = a[s : s + 8192], b[s : s + 8192]
            r, worst = A.pixel_check(pixels, x, y, t)
            same = (r >= min_correlation) & (worst <= A.MAX_RESIDUAL)
            found.update(zip(x[same].tolist(), y[same].tolist(), strict=True))
    return len(found), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plant"]:  # python bench/audit.py plant ROOT OUT --per-kind 10
        q = argparse.ArgumentParser(prog="bench/audit.py plant")
        q.add_argument("root")
        q.add_argument("out")
        q.add_argument("--per-kind", type=int, default=10)
        a = q.parse_args(argv[1:])
        planted = plant_in_ferplus(Path(a.root), Path(a.out), a.per_kind)
        print(
            f"{len(planted)} train faces planted as test faces in {a.out} (identical, JPEG 30, mirrored)"
        )
        return 0
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--faces", type=int, default=35_887, help="faces in all (FER2013: 35,887)")
    p.add_argument("--per-kind", type=int, default=600, help="twins planted per transformation")
    p.add_argument("--naive", type=int, default=1500, help="faces of the all-pairs comparison")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="append the result to this results file (bench/results.json)")
    args = p.parse_args(argv)
    n_test = n_val = round(args.faces * 3589 / 35_887)
    splits = synthetic_splits(args.faces - n_val - n_test, n_val, n_test, args.seed)
    splits, planted = plant(splits, args.per_kind, args.seed)
    start = time.perf_counter()
    faces = A.Faces.of(splits)
    result = A.audit(faces)
    seconds = time.perf_counter() - start
    row = {
        "faces": len(faces),
        "planted": len(planted),
        "seconds": round(seconds, 1),
        "stages": result.seconds,
        "candidates": result.candidates,
        "pairs": len(result.pairs),
        **score(result, planted),
    }
    if args.naive:
        sub = A.Faces.of({"train": faces.images[: args.naive]})
        t0 = time.perf_counter()
        fast = A.audit(sub)
        fast_s = time.perf_counter() - t0
        naive_n, naive_s = naive_pairs(sub)
        row["subset"] = {
            "faces": args.naive,
            "audit_seconds": round(fast_s, 2),
            "audit_pairs": len(fast.pairs),
            "all_pairs_seconds": round(naive_s, 1),
            "all_pairs_found": naive_n,
            "speedup": round(naive_s / fast_s, 1),
            # all-pairs time grows as N^2: at the full size
            "all_pairs_seconds_at_full_size": round(naive_s * (len(faces) / args.naive) ** 2),
        }
    print(json.dumps(row, indent=1))
    if args.json:
        path = Path(args.json)
        results = json.loads(path.read_text()) if path.exists() else {}
        results["audit"] = row
        path.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
