"""Wild conditions: the degradations a face is evaluated under (`nrfer evaluate --degrade`,
a study's `eval_degradations:`), each at a severity, deterministic by seed.

    lowres:S   the face at S x S pixels (box-averaged down, nearest back up to its size:
               S x S distinct blocks, the information of an S-pixel face)
    blur:S     Gaussian blur of standard deviation S pixels (at the face's own size)
    jpeg:Q     JPEG compression at quality Q (1..95)
    noise:S    additive Gaussian noise of standard deviation S (fraction of the 0..255 range)
    occlude:F  a black square covering the fraction F of the face at a random position

A degradation applies to the raw faces (48x48 for FER+), before the model's own
preprocessing (its SR stage, its resize), the way a small or poor face reaches it. The
random ones (noise, occlude) draw from a generator seeded by (seed, kind, severity), so the
same faces get the same degradation in every run and every model: paired comparisons.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Kind:
    """One kind of degradation: its allowed severities and what it does to uint8 faces
    [N, C, H, W] (with a seeded generator for the random kinds)."""

    name: str
    unit: str
    low: float
    high: float
    integer: bool
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    worse: str  # "lower" or "higher": which way a severity is harsher
    clean: float  # the severity that leaves a face as it is (lowres: FER+'s 48 px)


def _lowres(x: np.ndarray, s: float, rng) -> np.ndarray:
    side = int(s)
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        for ch in range(c):
            small = Image.fromarray(x[i, ch]).resize((side, side), Image.Resampling.BOX)
            out[i, ch] = np.asarray(small.resize((w, h), Image.Resampling.NEAREST))
    return out


def _blur(x: np.ndarray, s: float, rng) -> np.ndarray:
    import cv2

    n, c, h, w = x.shape
    flat = x.reshape(n * c, h, w)
    out = np.stack(
        [cv2.GaussianBlur(f, (0, 0), sigmaX=s, borderType=cv2.BORDER_REFLECT_101) for f in flat]
    )
    return out.reshape(x.shape)


def _jpeg(x: np.ndarray, q: float, rng) -> np.ndarray:
    out = np.empty_like(x)
    for i, face in enumerate(x):
        img = Image.fromarray(face[0] if face.shape[0] == 1 else face.transpose(1, 2, 0))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(q))
        buf.seek(0)
        with Image.open(buf) as back:
            arr = np.asarray(back.convert(img.mode))
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return out


def _noise(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    noisy = x.astype(np.float32) + rng.normal(0.0, s * 255.0, size=x.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def occluder_side(h: int, w: int, fraction: float) -> tuple[int, int]:
    """The occluding square's side in rows and columns: area `fraction` of h x w (rounded)."""
    return max(1, round(h * fraction**0.5)), max(1, round(w * fraction**0.5))


def _occlude(x: np.ndarray, f: float, rng: np.random.Generator) -> np.ndarray:
    n, _, h, w = x.shape
    sh, sw = occluder_side(h, w, f)
    tops = rng.integers(0, h - sh + 1, size=n)
    lefts = rng.integers(0, w - sw + 1, size=n)
    out = x.copy()
    for i in range(n):
        out[i, :, tops[i] : tops[i] + sh, lefts[i] : lefts[i] + sw] = 0
    return out


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("lowres", "px a side", 2, 1024, True, _lowres, "lower", 48),
        Kind("blur", "px sigma", 0.1, 50, False, _blur, "higher", 0),
        Kind("jpeg", "quality", 1, 95, True, _jpeg, "lower", 100),
        Kind("noise", "std (0..1 range)", 0.001, 1, False, _noise, "higher", 0),
        Kind("occlude", "of the face", 0.01, 0.9, False, _occlude, "higher", 0),
    )
}


@dataclass(frozen=True, order=True)
class Degradation:
    kind: str
    severity: float

    @property
    def label(self) -> str:
        """kind:severity as written (lowres:12, blur:1.5): a table column and a file name."""
        s = self.severity
        return f"{self.kind}:{int(s) if float(s).is_integer() else s:g}"

    @property
    def key(self) -> str:
        """The label as a metric-key part: lowres_12, blur_1.5."""
        return self.label.replace(":", "_")

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """These uint8 faces [N, C, H, W] degraded; the same faces and seed give the same
        result (a generator of its own per kind and severity, faces in order)."""
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"faces must be uint8 [N, C, H, W], got {images.dtype} {images.shape}")
        kind = KINDS[self.kind]
        if kind.name == "lowres" and self.severity > min(images.shape[2:]):
            raise ValueError(
                f"{self.label}: the faces are {images.shape[3]}x{images.shape[2]} px; lowres "
                "must be at most their size"
            )
        tag = zlib.crc32(self.label.encode())
        rng = np.random.default_rng([int(seed), tag])
        return kind.apply(images, self.severity, rng)


def _severity(kind: Kind, text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    ok = value == value and kind.low <= value <= kind.high
    if ok and kind.integer and not value.is_integer():
        ok = False
    if not ok:
        number = "an integer" if kind.integer else "a number"
        raise ValueError(
            f"{where}: {kind.name} severity {text!r}: expected {number} in "
            f"{kind.low:g}..{kind.high:g} ({kind.unit})"
        )
    return value


def parse(items: Iterable[str], where: str = "--degrade") -> list[Degradation]:
    """`kind:s1,s2 ...` items (--degrade lowres:12,16 jpeg:20) as degradations, in the order
    given, each once; an unknown kind or a severity out of range names the item and what is
    allowed."""
    out: list[Degradation] = []
    for item in items:
        kind_name, sep, severities = str(item).partition(":")
        kind = KINDS.get(kind_name.strip().lower())
        if kind is None or not sep or not severities.strip():
            raise ValueError(
                f"{where}: {item!r} is not KIND:SEVERITY[,SEVERITY...] with KIND one of "
                f"{', '.join(KINDS)} (e.g. lowres:12,16,24 blur:1,2 jpeg:20,50 noise:0.05 "
                "occlude:0.25)"
            )
        for text in severities.split(","):
            d = Degradation(kind.name, _severity(kind, text.strip(), where))
            if d not in out:
                out.append(d)
    return out


def from_mapping(raw, where: str) -> list[Degradation]:
    """A space file's `eval_degradations:`: a mapping kind -> severity or list of severities
    ({lowres: [12, 24], jpeg: 20}) or a list of `kind:severities` strings."""
    if isinstance(raw, dict):
        items = []
        for kind, sev in raw.items():
            sevs = sev if isinstance(sev, list) else [sev]
            if not sevs or any(isinstance(s, bool) or not isinstance(s, int | float) for s in sevs):
                raise ValueError(
                    f"{where}.{kind}: expected a severity or a list of severities (numbers), "
                    f"got {sev!r}"
                )
            items.append(f"{kind}:{','.join(f'{s:g}' for s in sevs)}")
        return parse(items, where)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return parse(raw, where)
    raise ValueError(
        f"{where}: expected a mapping like {{lowres: [12, 24], jpeg: [20]}} or a list of "
        f"'kind:severity' strings, got {raw!r}"
    )


def by_kind(degradations: Iterable[Degradation]) -> dict[str, list[Degradation]]:
    """Grouped by kind (in first-seen order), each kind's from mild to harsh."""
    groups: dict[str, list[Degradation]] = {}
    for d in degradations:
        groups.setdefault(d.kind, []).append(d)
    for kind, ds in groups.items():
        ds.sort(key=lambda d: d.severity, reverse=KINDS[kind].worse == "lower")
    return groups
