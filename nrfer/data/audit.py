"""Leakage audit: the same face more than once, within a split and across splits.

FER2013 (and so FER+, the same images in the same splits) holds exact duplicates and
near-duplicates of one face; a test face whose twin is in training measures memory, not
recognition. This finds them in seconds, not by comparing all pairs:

1. exact duplicates: identical pixels (a SHA-1 of each face's bytes);
2. candidates: perceptual hashes (imagehash's pHash and dHash, 64 bits each) of every face
   and of its mirror image, and dHashes of each face shifted by 1 or 2 pixels (a face cropped
   a little differently). Pairs within `RADIUS` bits (`SHIFT_RADIUS` for the shifted copies)
   are found with multi-index hashing: each hash is cut into 4 chunks of 16 bits, and two
   hashes within 7 bits agree within 1 bit on some chunk (buckets of more than
   `MAX_BUCKET` faces are not probed), so probing each chunk's bucket and
   its 16 one-bit neighbours finds every such pair without comparing all N^2. A face keeps
   its `PER_FACE` nearest candidates per probe (faces drawn from few parameters, like the
   synthetic ones, share hashes by the thousand; a real twin is among the nearest);
3. each candidate confirmed at the pixel level, the second face aligned as its hash matched
   (mirrored or shifted), over the interior (a 3 px border left out) and over the pixels
   clipped (<= 5 or >= 250) in both faces or in neither, so brightening that saturates the
   skin does not hide a twin: the Pearson correlation of the faces blurred by 1 px (JPEG
   noise gone) at least `MIN_CORRELATION`, and, once the second is scaled to the first
   (brightness and contrast), the largest local difference left (blurred by 1.5 px) at most
   `MAX_RESIDUAL` of the first's contrast: a different mouth or brow shows there even where
   two faces correlate as a whole. A cheap correlation at half resolution cuts first.

The hashes run in worker processes and each alignment's probe and checks in a thread, so
35,887 faces take under 60 s on 2 cores (bench/audit.py; bench/NOTES.md).

Faces are uint8 [N, H, W]; a face is named `split:index` in the order the dataset reader
gives, and carries the SHA-1 of its pixels, so an exclusion list can tell when it was made
from other data.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

HASH_BITS = 64
CHUNKS = 4
RADIUS = 6  # bits: the largest pHash or dHash distance of a candidate pair
SHIFT_RADIUS = 4  # bits: the same for a face against another's shifted copy
SHIFT = 2  # pixels: crops offset by up to this much are compared aligned
PER_FACE = 8  # nearest candidates a face keeps per probe
MAX_BUCKET = 256  # faces in one chunk bucket beyond which it is not probed
BLUR = 1.0  # px: the Gaussian blur before the correlation (most JPEG noise gone)
BORDER = 3  # pixels of each side left out of the pixel check (>= SHIFT)
CLIPPED = (5, 250)  # pixel values at or beyond these are left out of the pixel check
MIN_CORRELATION = 0.99  # of the blurred faces
RESIDUAL_BLUR = 1.5  # px: the size of a local difference
MAX_RESIDUAL = 0.35  # the largest local difference, in units of the face's contrast
ROUGH_CORRELATION = 0.95  # the cheap first cut (planted twins: at least 0.976)
MIN_USABLE = 0.1  # of the interior's pixels, unclipped in both or clipped in both
SIDE = 48  # faces of other sizes are resized to this before the audit (FER2013's side)
KINDS = ("exact", "near", "mirrored", "shifted")
SPLIT_ORDER = ("train", "val", "test")
COLUMNS = (
    "face_a",
    "split_a",
    "label_a",
    "sha1_a",
    "face_b",
    "split_b",
    "label_b",
    "sha1_b",
    "kind",
    "phash_distance",
    "dhash_distance",
    "correlation",
    "same_label",
)


@dataclass(frozen=True)
class Pair:
    a: int  # indices into the audited faces (all splits, in order), a < b
    b: int
    kind: str  # exact | near | mirrored | shifted
    phash: int  # Hamming distances of the two faces' hashes (the mirror's for mirrored)
    dhash: int
    correlation: float


@dataclass
class Faces:
    """Every face of the audited splits in one array, with where each came from."""

    images: np.ndarray  # uint8 [N, H, W]
    splits: list[str]  # per face
    indices: np.ndarray  # per face: its index within its split
    labels: np.ndarray  # per face: its label (-1: none)
    sha1: list[str] = field(default_factory=list)  # per face, of the pixels as read
    class_names: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        splits: dict[str, np.ndarray],
        labels: dict[str, np.ndarray] | None = None,
        class_names: Iterable[str] = (),
    ) -> Faces:
        """From {split: uint8 faces [N, H, W] or [N, C, H, W]}; colour is averaged to grey
        and faces not SIDE x SIDE are resized (the SHA-1 is of the faces as given)."""
        images, names, idx, labs, digests = [], [], [], [], []
        for name, faces in splits.items():
            faces = np.asarray(faces)
            if faces.dtype != np.uint8 or faces.ndim not in (3, 4):
                raise ValueError(
                    f"{name}: faces must be uint8 [N, H, W] or [N, C, H, W], "
                    f"got {faces.dtype} {faces.shape}"
                )
            digests += sha1s(faces)
            images.append(_grey(faces))
            names += [name] * len(faces)
            idx.append(np.arange(len(faces)))
            got = None if labels is None else labels.get(name)
            labs.append(np.full(len(faces), -1) if got is None else np.asarray(got))
        return cls(
            np.concatenate(images) if images else np.zeros((0, SIDE, SIDE), np.uint8),
            names,
            np.concatenate(idx) if idx else np.zeros(0, int),
            np.concatenate(labs).astype(int) if labs else np.zeros(0, int),
            digests,
            tuple(class_names),
        )

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return f"{self.splits[i]}:{int(self.indices[i])}"

    def label(self, i: int) -> str:
        lab = int(self.labels[i])
        if lab < 0:
            return ""
        return self.class_names[lab] if lab < len(self.class_names) else str(lab)


def _grey(faces: np.ndarray) -> np.ndarray:
    if faces.ndim == 4:
        faces = faces[:, 0] if faces.shape[1] == 1 else faces.mean(axis=1).round().astype(np.uint8)
    if faces.shape[1:] == (SIDE, SIDE):
        return faces
    from PIL import Image

    return (
        np.stack(
            [
                np.asarray(Image.fromarray(f).resize((SIDE, SIDE), Image.Resampling.BOX))
                for f in faces
            ]
        )
        if len(faces)
        else np.zeros((0, SIDE, SIDE), np.uint8)
    )


def sha1s(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images]


# -- hashes -------------------------------------------------------------------------------


def _hash(images: np.ndarray, fn) -> np.ndarray:
    """imagehash's 64-bit hash of each face as uint64 (its bits in imagehash's order)."""
    from PIL import Image

    bits = np.stack([fn(Image.fromarray(im)).hash.ravel() for im in images])
    weights = np.uint64(1) << np.arange(HASH_BITS - 1, -1, -1, dtype=np.uint64)
    return np.bitwise_or.reduce(np.where(bits, weights, np.uint64(0)), axis=1)


def phashes(images: np.ndarray) -> np.ndarray:
    import imagehash

    return _hash(images, imagehash.phash) if len(images) else np.zeros(0, np.uint64)


def dhashes(images: np.ndarray) -> np.ndarray:
    import imagehash

    return _hash(images, imagehash.dhash) if len(images) else np.zeros(0, np.uint64)


def all_hashes(images: np.ndarray) -> dict[object, np.ndarray]:
    """Every hash the audit probes with, of faces [K, H, W]: "phash", "dhash" of the faces,
    ("phash", "mirror"), ("dhash", "mirror") of their mirrors, ("dhash", (dx, dy)) of them
    shifted by each of OFFSETS."""
    mirrors = images[:, :, ::-1]
    out: dict[object, np.ndarray] = {
        "phash": phashes(images),
        "dhash": dhashes(images),
        ("phash", "mirror"): phashes(mirrors),
        ("dhash", "mirror"): dhashes(mirrors),
    }
    for offset in OFFSETS:
        out[("dhash", offset)] = dhashes(shifted(images, *offset))
    return out


def hashes_of(images: np.ndarray, workers: int) -> dict[object, np.ndarray]:
    """all_hashes, in `workers` processes for a large set (imagehash works face by face)."""
    if workers <= 1 or len(images) < 2000:
        return all_hashes(images)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork where there is one: a spawned worker would run the caller's script again when it
    # has no `if __name__ == "__main__"`; the workers use no thread pool (PIL, numpy, DCT)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        done = list(pool.map(all_hashes, np.array_split(images, workers * 2)))
    return {key: np.concatenate([d[key] for d in done]) for key in done[0]}


def shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Each face moved by (dx, dy) pixels (|dx|, |dy| <= SHIFT), its edge repeated into the
    gap."""
    p = SHIFT
    padded = np.pad(images, ((0, 0), (p, p), (p, p)), mode="edge")
    h, w = images.shape[1:]
    return padded[:, p - dy : p - dy + h, p - dx : p - dx + w]


# Half of the offsets within SHIFT: the other half is the same pair seen from its other face.
OFFSETS = [
    (dx, dy)
    for dx in range(-SHIFT, SHIFT + 1)
    for dy in range(-SHIFT, SHIFT + 1)
    if (dx, dy) > (0, 0)
]

_BYTE_COUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy 2's bitwise_count; a byte table before it)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(np.asarray(x, dtype=np.uint64)).astype(np.int64)
    as_bytes = np.ascontiguousarray(x, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    return _BYTE_COUNT[as_bytes].sum(axis=1, dtype=np.int64).reshape(np.shape(x))


def within(
    queries: np.ndarray,
    index: np.ndarray,
    radius: int = RADIUS,
    per_face: int = PER_FACE,
    block: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query position, index position, distance) of hashes at most `radius` bits apart
    (radius <= 2 * CHUNKS - 1), each query keeping its `per_face` nearest: multi-index
    hashing (some 16-bit chunk of two such hashes differs in at most one bit, so each
    chunk's bucket and its one-bit neighbours are probed). Buckets holding more than
    MAX_BUCKET faces are not probed: a chunk value that common says nothing, and a close
    pair agrees on more than one chunk (within 3 bits: on at least three within one bit)."""
    if radius > 2 * CHUNKS - 1:
        raise ValueError(f"radius {radius}: at most {2 * CHUNKS - 1} bits with {CHUNKS} chunks")
    empty = np.zeros(0, dtype=np.int64)
    if not len(queries) or not len(index):
        return empty, empty, empty
    width = HASH_BITS // CHUNKS
    masks = [0] + [1 << b for b in range(width)]
    chunks = []
    for c in range(CHUNKS):
        shift = np.uint64(c * width)
        ic = ((index >> shift) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(ic, kind="stable")
        chunks.append((shift, order, ic[order]))
    out_q, out_i, out_d = [], [], []
    for start in range(0, len(queries), block):
        qs = queries[start : start + block]
        found: list[np.ndarray] = []
        for shift, order, sorted_ic in chunks:
            qc = ((qs >> shift) & np.uint64(0xFFFF)).astype(np.int64)
            for m in masks:
                keys = qc ^ m
                lo = np.searchsorted(sorted_ic, keys, side="left")
                n = np.searchsorted(sorted_ic, keys, side="right") - lo
                n[n > MAX_BUCKET] = 0
                total = int(n.sum())
                if not total:
                    continue
                q = np.repeat(np.arange(len(qs)), n)
                i = order[np.arange(total) + np.repeat(lo - (np.cumsum(n) - n), n)]
                close = popcount(qs[q] ^ index[i]) <= radius
                found.append(q[close] * len(index) + i[close])
        if not found:
            continue
        key = np.unique(np.concatenate(found))
        q, i = key // len(index), key % len(index)
        q, i, d = nearest(q, i, popcount(qs[q] ^ index[i]), per_face)
        out_q.append(q + start)
        out_i.append(i)
        out_d.append(d)
    if not out_q:
        return empty, empty, empty
    return np.concatenate(out_q), np.concatenate(out_i), np.concatenate(out_d)


def nearest(
    q: np.ndarray, i: np.ndarray, d: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of pairs (q, i) at distance d, each q's k nearest (ties: the lower i), sorted by q."""
    order = np.lexsort((i, d, q))
    q, i, d = q[order], i[order], d[order]
    keep = np.arange(len(q)) - np.searchsorted(q, q, side="left") < k
    return q[keep], i[keep], d[keep]


# -- the pixel check ------------------------------------------------------------------------


@dataclass
class _Pixels:
    """Each face as float32, blurred, and where it is clipped, for the pixel check."""

    raw: np.ndarray
    blurred: np.ndarray
    clipped: np.ndarray

    @classmethod
    def of(cls, images: np.ndarray) -> _Pixels:
        from scipy.ndimage import gaussian_filter

        raw = images.astype(np.float32)
        clipped = (images <= CLIPPED[0]) | (images >= CLIPPED[1])
        return cls(raw, gaussian_filter(raw, (0, BLUR, BLUR)), clipped)

    def rough(self, a: np.ndarray, b: np.ndarray, transform) -> np.ndarray:
        """The correlation of the blurred interiors at half resolution, clipped pixels and
        all: cheap, and a first cut every twin the full check accepts passes."""
        n = len(a)
        x = interior(self.blurred[a], None, step=2).reshape(n, -1)
        y = interior(self.blurred[b], transform, step=2).reshape(n, -1)
        x = x - x.mean(axis=1, keepdims=True)
        y = y - y.mean(axis=1, keepdims=True)
        den = np.sqrt(np.einsum("ij,ij->i", x, x) * np.einsum("ij,ij->i", y, y))
        return np.einsum("ij,ij->i", x, y) / np.maximum(den, 1e-6)


def interior(v: np.ndarray, transform, step: int = 1) -> np.ndarray:
    """The interior (BORDER px in from each side) of faces v [K, H, W] as `transform` aligns
    them: None, "mirror", or (dx, dy), the face shifted by that much (|dx|, |dy| <= BORDER,
    so the shift is a slice)."""
    if transform == "mirror":
        v = v[:, :, ::-1]
    dx, dy = (0, 0) if transform in (None, "mirror") else transform
    h, w = v.shape[1:]
    return v[:, BORDER - dy : h - BORDER - dy : step, BORDER - dx : w - BORDER - dx : step]


def pixel_check(
    pixels: _Pixels, a: np.ndarray, b: np.ndarray, transform
) -> tuple[np.ndarray, np.ndarray]:
    """Of each pair (a[k], b[k]), b aligned by `transform`, over the interior and the pixels
    clipped in both or in neither (grown by 2 px): the correlation of the blurred faces, and
    the largest local difference left once b is scaled to a (brightness and contrast), as a
    fraction of a's contrast: a different mouth or brow shows there even when the faces
    correlate as a whole."""
    from scipy.ndimage import gaussian_filter, maximum_filter

    n = len(a)
    mask = ~maximum_filter(
        interior(pixels.clipped[a], None) ^ interior(pixels.clipped[b], transform), (0, 5, 5)
    )
    m = mask.astype(np.float32)
    count = m.reshape(n, -1).sum(axis=1)

    def centred(v: np.ndarray) -> np.ndarray:
        return (v - ((v * m).reshape(n, -1).sum(axis=1) / np.maximum(count, 1))[:, None, None]) * m

    def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.einsum("ijk,ijk->i", u, v)

    xc, yc = (
        centred(interior(pixels.blurred[a], None)),
        centred(interior(pixels.blurred[b], transform)),
    )
    r = dot(xc, yc) / np.sqrt(np.maximum(dot(xc, xc) * dot(yc, yc), 1e-12))
    xc, yc = centred(interior(pixels.raw[a], None)), centred(interior(pixels.raw[b], transform))
    sxy, sxx, syy = dot(xc, yc), dot(xc, xc), dot(yc, yc)
    residual = xc - (sxy / np.maximum(syy, 1e-12))[:, None, None] * yc
    spread = (0, RESIDUAL_BLUR, RESIDUAL_BLUR)
    weight = gaussian_filter(m, spread)
    local = np.abs(gaussian_filter(residual, spread)) / np.maximum(weight, 1e-6)
    worst = np.where(weight > 0.5, local, 0).reshape(n, -1).max(axis=1)
    worst = worst / np.maximum(np.sqrt(sxx / np.maximum(count, 1)), 1e-6)
    # too few pixels to judge, or a flat face: no pixel evidence (exact copies still count)
    judged = (count >= MIN_USABLE * m[0].size) & (sxx > 0) & (syy > 0)
    return np.where(judged, r, 0.0), np.where(judged, worst, np.inf)


# -- the audit ------------------------------------------------------------------------------


@dataclass
class Audit:
    faces: Faces
    pairs: list[Pair]
    candidates: int  # pairs the hashes proposed (before the pixel check)
    seconds: dict[str, float]


def audit(
    faces: Faces,
    *,
    min_correlation: float = MIN_CORRELATION,
    max_residual: float = MAX_RESIDUAL,
    per_face: int = PER_FACE,
    workers: int | None = None,
) -> Audit:
    """Every pair of the same face: exact, near (hash + pixels), mirrored, shifted.
    `workers`: processes for the hashes and threads for the checks (default: the CPUs)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or min(os.cpu_count() or 1, 8)
    clock = {"start": time.perf_counter()}
    pairs: dict[tuple[int, int], Pair] = {}
    groups: dict[str, list[int]] = {}
    for k, d in enumerate(faces.sha1):
        groups.setdefault(d, []).append(k)
    for members in groups.values():
        for a, b in combinations(members, 2):
            pairs[(a, b)] = Pair(a, b, "exact", 0, 0, 1.0)
    # one representative of each set of identical faces is hashed and checked
    reps = np.array([m[0] for m in groups.values()], dtype=np.int64)
    seconds: dict[str, float] = {}
    if len(reps) < 2:
        return Audit(faces, _sorted(pairs), 0, seconds)
    images = faces.images[reps]
    hashes = hashes_of(images, workers)
    seconds["hashes"] = _lap(clock)
    pixels = _Pixels.of(images)
    limits = (min_correlation, max_residual, per_face)
    with ThreadPoolExecutor(workers) as pool:  # numpy and scipy let go of the GIL
        found = list(
            pool.map(lambda t: _probe(hashes, pixels, t, limits), [None, "mirror", *OFFSETS])
        )
    seconds["checks"] = _lap(clock)
    ph, dh = hashes["phash"], hashes["dhash"]
    ph_m, dh_m = hashes[("phash", "mirror")], hashes[("dhash", "mirror")]
    for transform, (qa, ib, r, _) in zip([None, "mirror", *OFFSETS], found, strict=True):
        kind = "near" if transform is None else "mirrored" if transform == "mirror" else "shifted"
        for x, y, corr in zip(qa.tolist(), ib.tolist(), r.tolist(), strict=True):
            if kind == "mirrored":
                distances = int(popcount(ph[x] ^ ph_m[y])), int(popcount(dh[x] ^ dh_m[y]))
            else:
                distances = int(popcount(ph[x] ^ ph[y])), int(popcount(dh[x] ^ dh[y]))
            _add(pairs, groups, faces, reps, x, y, kind, corr, distances)
    return Audit(faces, _sorted(pairs), sum(f[3] for f in found), seconds)


def _probe(hashes: dict, pixels: _Pixels, transform, limits, batch: int = 4096):
    """The pairs of one alignment (None, "mirror" or a shift): their candidates from the
    hash index, then the pixel check. Returns (a, b, correlation) of the pairs accepted and
    the number of candidates checked."""
    min_correlation, max_residual, per_face = limits
    n = len(pixels.raw)
    if transform is None:
        probes = [(hashes["phash"], hashes["phash"]), (hashes["dhash"], hashes["dhash"])]
    elif transform == "mirror":
        probes = [
            (hashes["phash"], hashes[("phash", "mirror")]),
            (hashes["dhash"], hashes[("dhash", "mirror")]),
        ]
    else:
        probes = [(hashes["dhash"], hashes[("dhash", transform)])]
    radius = SHIFT_RADIUS if len(probes) == 1 else RADIUS
    keys = []
    for q_hash, i_hash in probes:
        q, i, _ = within(q_hash, i_hash, radius, per_face)
        keys.append(q[q != i] * n + i[q != i])
    key = np.unique(np.concatenate(keys))
    if transform in (None, "mirror"):  # symmetric: (a, b) and (b, a) are one check
        first, second = key // n, key % n
        key = np.unique(np.minimum(first, second) * n + np.maximum(first, second))
    out_a, out_b, out_r = [], [], []
    for start in range(0, len(key), batch):
        part = key[start : start + batch]
        qa, ib = part // n, part % n
        likely = pixels.rough(qa, ib, transform) >= ROUGH_CORRELATION
        qa, ib = qa[likely], ib[likely]
        if not len(qa):
            continue
        r, worst = pixel_check(pixels, qa, ib, transform)
        same = (r >= min_correlation) & (worst <= max_residual)
        out_a.append(qa[same])
        out_b.append(ib[same])
        out_r.append(r[same])
    empty = np.zeros(0, dtype=np.int64)
    if not out_a:
        return empty, empty, np.zeros(0, np.float32), len(key)
    return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_r), len(key)


def _lap(clock: dict) -> float:
    now = time.perf_counter()
    lap, clock["start"] = now - clock["start"], now
    return round(lap, 3)


def _add(pairs, groups, faces, reps, x, y, kind, corr, distances: tuple[int, int]) -> None:
    """The pair of representatives x, y, spread over the identical faces each stands for."""
    for a in groups[faces.sha1[reps[x]]]:
        for b in groups[faces.sha1[reps[y]]]:
            key = (min(a, b), max(a, b))
            old = pairs.get(key)
            if old is not None and (old.kind == "exact" or old.correlation >= corr):
                continue
            pairs[key] = Pair(key[0], key[1], kind, distances[0], distances[1], round(corr, 4))


def _sorted(pairs: dict) -> list[Pair]:
    return sorted(pairs.values(), key=lambda p: (p.a, p.b))


# -- what it found --------------------------------------------------------------------------


def split_pair(faces: Faces, p: Pair) -> str:
    a, b = sorted((faces.splits[p.a], faces.splits[p.b]), key=_split_rank)
    return f"{a}-{b}"


def _split_rank(s: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s)


EARLIER = {"val": ("train",), "test": ("train", "val")}  # a twin here leaks into the key split


def leaked_faces(faces: Faces, pairs: list[Pair]) -> dict[str, set[int]]:
    """Per evaluation split, the indices (within it) of faces with a twin in training (val)
    or in training or validation (test): the faces a leak-free score leaves out."""
    out: dict[str, set[int]] = {s: set() for s in EARLIER}
    for p in pairs:
        for x, y in ((p.a, p.b), (p.b, p.a)):
            if faces.splits[y] in EARLIER.get(faces.splits[x], ()):
                out[faces.splits[x]].add(int(faces.indices[x]))
    return out


def summary(result: Audit) -> dict:
    """Counts by split pair and kind, the pairs whose labels differ, and the leaked faces."""
    faces, pairs = result.faces, result.pairs
    by: dict[str, dict[str, int]] = {}
    disagree: dict[str, int] = {}
    for p in pairs:
        sp = split_pair(faces, p)
        by.setdefault(sp, dict.fromkeys(KINDS, 0))[p.kind] += 1
        if faces.labels[p.a] >= 0 and faces.labels[p.a] != faces.labels[p.b]:
            disagree[sp] = disagree.get(sp, 0) + 1
    sizes: dict[str, int] = {}
    for s in faces.splits:
        sizes[s] = sizes.get(s, 0) + 1
    return {
        "faces": len(faces),
        "splits": sizes,
        "pairs": len(pairs),
        "candidates": result.candidates,
        "by_split_pair": dict(
            sorted(by.items(), key=lambda kv: [_split_rank(s) for s in kv[0].split("-")])
        ),
        "label_disagreements": disagree,
        "leaked": {s: len(v) for s, v in leaked_faces(faces, pairs).items() if s in sizes},
        "seconds": result.seconds,
    }


def write_csv(path: Path, result: Audit) -> None:
    from nrfer.files import atomic_file

    faces = result.faces
    with atomic_file(path) as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for p in result.pairs:
            w.writerow(
                [
                    faces.name(p.a),
                    faces.splits[p.a],
                    faces.label(p.a),
                    faces.sha1[p.a],
                    faces.name(p.b),
                    faces.splits[p.b],
                    faces.label(p.b),
                    faces.sha1[p.b],
                    p.kind,
                    p.phash,
                    p.dhash,
                    f"{p.correlation:.4f}",
                    int(faces.labels[p.a] == faces.labels[p.b]),
                ]
            )


def contact_sheet(result: Audit, limit: int = 24):
    """An image (PIL) of the closest cross-split pairs (exact first, then by correlation):
    each row a pair, its two faces side by side at 2x, with names, labels and the kind."""
    from PIL import Image, ImageDraw

    faces = result.faces
    cross = [p for p in result.pairs if faces.splits[p.a] != faces.splits[p.b]]
    cross.sort(key=lambda p: (p.kind != "exact", -p.correlation, p.a, p.b))
    shown = cross[:limit]
    h, w = faces.images.shape[1:]
    scale, text_w, pad = 2, 240, 4
    row_h = h * scale + pad
    size = (2 * w * scale + text_w + 3 * pad, max(1, len(shown)) * row_h + pad)
    sheet = Image.new("L", size, 255)
    draw = ImageDraw.Draw(sheet)
    if not shown:
        draw.text((pad, pad), "no cross-split pairs", fill=0)
    for k, p in enumerate(shown):
        y = pad + k * row_h
        for col, face in enumerate((p.a, p.b)):
            im = Image.fromarray(faces.images[face]).resize(
                (w * scale, h * scale), Image.Resampling.NEAREST
            )
            sheet.paste(im, (pad + col * (w * scale + pad), y))
        draw.text(
            (2 * (w * scale + pad) + pad, y + 4),
            f"{faces.name(p.a)} ({faces.label(p.a) or '?'})\n"
            f"{faces.name(p.b)} ({faces.label(p.b) or '?'})\n"
            f"{p.kind}, r = {p.correlation:.3f}",
            fill=0,
        )
    return sheet


def screen(summary: dict, out: Path | None = None) -> str:
    """The summary as a few lines for the terminal."""
    sizes = ", ".join(f"{s} {n}" for s, n in summary["splits"].items())
    lines = [
        f"{summary['faces']} faces ({sizes}): {summary['pairs']} pairs of the same face "
        f"(of {summary['candidates']} candidate pairs from the hash index)",
        f"  {'split pair':<12}" + "".join(f"{k:>10}" for k in KINDS) + f"{'labels differ':>15}",
    ]
    for sp, counts in summary["by_split_pair"].items():
        lines.append(
            f"  {sp:<12}"
            + "".join(f"{counts[k]:>10}" for k in KINDS)
            + f"{summary['label_disagreements'].get(sp, 0):>15}"
        )
    if not summary["by_split_pair"]:
        lines.append("  (none)")
    for split, n in summary["leaked"].items():
        total = summary["splits"][split]
        where = "train" if split == "val" else "train or val"
        lines.append(
            f"  {split}: {n} of {total} faces ({100 * n / max(total, 1):.2f}%) have a twin in {where}"
        )
    if out is not None:
        lines.append(
            f"  pairs: {out / 'audit.csv'}; closest cross-split pairs: {out / 'contact_sheet.png'}"
        )
        lines.append(f"  scores without them: nrfer evaluate ... --exclude {out / 'audit.csv'}")
    return "\n".join(lines)


def kept(n: int, leaked: np.ndarray) -> np.ndarray:
    """The mask of a split's `n` faces without the `leaked` ones (indices, `leaked_in`)."""
    keep = np.ones(n, dtype=bool)
    keep[leaked] = False
    return keep


def accuracy_without(probs: np.ndarray, labels: np.ndarray, leaked: np.ndarray) -> float:
    """Accuracy of predictions `probs` [N, K] against `labels` without the `leaked` faces:
    what a study's, best's and evaluate's "without leaked faces" share."""
    keep = kept(len(labels), leaked)
    return float((probs.argmax(1)[keep] == labels[keep]).mean())


def leaked_in(path: str | Path, split: str, images: np.ndarray) -> np.ndarray:
    """The indices of `split`'s faces that audit.csv `path` finds a twin of in an earlier
    split (train for val; train or val for test), checked against `images` (the split as
    read now): a face whose pixels are not the ones audited is an error, not a guess."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--exclude {path}: no such file (make it with `nrfer data audit`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        header = set(rows[0]) if rows else set()
    missing = {"face_a", "split_a", "sha1_a", "face_b", "split_b", "sha1_b"} - header
    if rows and missing:
        raise ValueError(
            f"--exclude {path}: not an audit.csv (no column {', '.join(sorted(missing))})"
        )
    found: dict[int, str] = {}
    for line, row in enumerate(rows, start=2):
        for me, other in (("a", "b"), ("b", "a")):
            if row[f"split_{me}"] != split or row[f"split_{other}"] not in EARLIER.get(split, ()):
                continue
            try:
                index = int(row[f"face_{me}"].rpartition(":")[2])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: face {row[f'face_{me}']!r} is not split:index"
                ) from None
            found[index] = row[f"sha1_{me}"]
    for index, digest in sorted(found.items()):
        if index >= len(images) or sha1s(images[index : index + 1])[0] != digest:
            raise ValueError(
                f"--exclude {path}: {split}:{index} is not the face that was audited (its pixels "
                "differ, or the split is shorter): run `nrfer data audit` again on this data"
            )
    return np.array(sorted(found), dtype=np.int64)
