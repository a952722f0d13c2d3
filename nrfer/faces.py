"""Faces in real photographs: found, aligned and cropped for a FER model (`nrfer predict
photo.jpg`, the served model's `photo` input).

The detector is OpenCV's frontal-face Haar cascade that opencv-python-headless ships
(offline; no download), or a cascade XML from a local file (`--detector`, e.g. an LBP
cascade or one trained on your faces). Each face's eyes are looked for in the upper part of
its box with OpenCV's eye cascades; where a left and a right eye are found the face is
rotated about its centre so that they are level. A photo with no face upright is searched
turned (ROTATIONS, up to 40 degrees each way; a face counts where two neighbouring turns
find it): such a face is levelled by the turn it was found at, to within about 10 degrees.
`Face.levelled_by` says which ("eyes", "search", or None: not levelled, e.g. a face behind
glasses found upright). The crop is the box widened by `margin`
on each side (FER2013's faces include some hair and chin), square, at the photo's own
resolution (the model's preprocessing resizes it, as for any face image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
DETECT_SIDE = 1600  # photos larger than this are searched at this size (boxes scaled back)
MAX_TILT = 30.0  # degrees: an eye pair tilted more than this is taken as a false eye
# where the upright photo has no face, it is searched turned by these angles (degrees, in
# this order): the frontal cascade finds faces to about +-15 degrees of upright
ROTATIONS = (-40.0, -30.0, -20.0, 20.0, 30.0, 40.0)
# a face found turned counts only where the turn next to it (10 degrees away, the same
# side) finds it too, at that place: a real face holds over a range of turns, a pattern the
# cascade takes for one (a cat, a coffee cup) at one turn; and with this many times the
# neighbours an upright search needs
TURNED_NEIGHBOURS = 3


@dataclass(frozen=True)
class Face:
    """One face of a photo: its box (x, y, width, height in the photo's pixels), the centres
    of its eyes (image-left first) when both were found, the angle in degrees it was rotated
    by to level them (0 without eyes), and the aligned crop (uint8, square)."""

    box: tuple[int, int, int, int]
    eyes: tuple[tuple[float, float], tuple[float, float]] | None
    angle: float
    image: np.ndarray
    searched_at: float = 0.0  # the photo's turn at which the detector found it (degrees)

    @property
    def levelled_by(self) -> str | None:
        """What the crop's rotation rests on: "eyes" (both found), "search" (found only in
        the photo turned by `searched_at`: level to within half the search step), None."""
        if self.eyes is not None:
            return "eyes"
        return "search" if self.searched_at else None

    def to_dict(self) -> dict:
        eyes = None if self.eyes is None else [[round(v, 1) for v in e] for e in self.eyes]
        return {
            "box": list(self.box),
            "eyes": eyes,
            "angle": round(self.angle, 2),
            "levelled_by": self.levelled_by,
        }


def _cascade(path: str | Path, what: str):
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path}: no such file (an OpenCV cascade XML is expected)")
    try:
        cascade = cv2.CascadeClassifier(str(path))
    except (cv2.error, SystemError):  # a file OpenCV's XML reader refuses
        cascade = None
    if cascade is None or cascade.empty():
        raise ValueError(f"{what} {path}: not an OpenCV cascade classifier XML file")
    return cascade


def shipped(name: str) -> Path:
    """A cascade file opencv-python-headless ships (cv2.data)."""
    import cv2

    return Path(cv2.data.haarcascades) / name  # type: ignore[attr-defined]  # cv2 stubs


def gray_of(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) of an (H, W), (H, W, 3) RGB or (H, W, 4) image (ITU-R 601 luma)."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"a photo must be uint8 (0..255), got {img.dtype}")
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(img[..., :3]), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"a photo must be (H, W) or (H, W, 3), got shape {img.shape}")


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


class FaceFinder:
    """Finds, aligns and crops the faces of photos (see the module's docstring)."""

    def __init__(
        self,
        detector: str | Path | None = None,
        *,
        min_face: int | None = None,
        margin: float = 0.1,
        min_neighbors: int = 5,
        scale_factor: float = 1.1,
    ) -> None:
        """detector: a cascade XML (default: OpenCV's frontal-face cascade); min_face: the
        smallest face side searched, px (default 6% of the photo's shorter side, at least
        24); margin: the crop's widening of the box on each side, as a fraction of it."""
        if not 0 <= margin <= 1:
            raise ValueError(f"margin {margin}: expected 0..1 of the face box")
        self.detector_file = Path(detector) if detector else shipped(FACE_CASCADE)
        self.face = _cascade(self.detector_file, "--detector" if detector else "face cascade")
        self.eye_cascades = [_cascade(shipped(n), "eye cascade") for n in EYE_CASCADES]
        self.min_face = min_face
        self.margin = margin
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor

    @property
    def name(self) -> str:
        return self.detector_file.name

    def min_side(self, height: int, width: int) -> int:
        """The smallest face side searched in a photo of that size, px."""
        return self.min_face or max(24, round(0.06 * min(height, width)))

    def boxes(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) of a uint8 grayscale photo, largest first."""
        return [box for box, _ in self.scored_boxes(gray)]

    def scored_boxes(
        self, gray: np.ndarray, min_neighbors: int | None = None
    ) -> list[tuple[tuple[int, int, int, int], float]]:
        """(box, the cascade's confidence) of each face, largest first."""
        import cv2

        h, w = gray.shape
        scale = min(1.0, DETECT_SIDE / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))  # a 20000x4 strip: 1 px, not 0
        small = gray if scale == 1 else cv2.resize(gray, size)
        side = max(20, round(self.min_side(h, w) * scale))
        found, _, weights = self.face.detectMultiScale3(
            cv2.equalizeHist(small),
            scaleFactor=self.scale_factor,
            minNeighbors=min_neighbors or self.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        boxes = [((round(x / scale), round(y / scale), round(bw / scale), round(bh / scale)), float(wt))
                 for (x, y, bw, bh), wt in zip(found, np.ravel(weights), strict=True)]  # fmt: skip
        return sorted(boxes, key=lambda b: -b[0][2] * b[0][3])

    def eyes(self, gray: np.ndarray, box) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The centres of the face's two eyes in photo coordinates (image-left first): the
        largest pair, one in each half of the box's upper part at a similar height."""
        import cv2

        x, y, w, h = box
        top = gray[y : y + int(0.6 * h), x : x + w]
        for cascade in self.eye_cascades:
            found = cascade.detectMultiScale(
                cv2.equalizeHist(top), 1.1, 4, minSize=(max(8, w // 9), max(8, w // 9))
            )
            centres = [(ex + ew / 2, ey + eh / 2, ew) for ex, ey, ew, eh in found]
            left = [c for c in centres if c[0] < w / 2]
            right = [c for c in centres if c[0] >= w / 2]
            pairs = [
                (a, b)
                for a in left
                for b in right
                if abs(a[1] - b[1]) < 0.25 * w and 0.2 * w < b[0] - a[0] < 0.75 * w
            ]
            if pairs:
                a, b = max(pairs, key=lambda p: p[0][2] + p[1][2])
                return (x + a[0], y + a[1]), (x + b[0], y + b[1])
        return None

    def crop(self, image: np.ndarray, box, angle: float) -> np.ndarray:
        """The box widened by `margin`, rotated by `angle` degrees about its centre (the
        eyes level), as a square uint8 crop at the photo's resolution; the photo's edge
        pixels fill what lies outside it."""
        import cv2

        x, y, w, h = box
        side = max(8, round(max(w, h) * (1 + 2 * self.margin)))
        cx, cy = x + w / 2, y + h / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[0, 2] += side / 2 - cx
        m[1, 2] += side / 2 - cy
        img = np.ascontiguousarray(image)
        return cv2.warpAffine(
            img, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Every face of a photo (uint8 (H, W) or (H, W, 3) RGB), largest first: searched
        upright, and where none is found there, in the photo turned by each of ROTATIONS
        in turn (the first turn that finds faces gives them)."""
        gray = gray_of(image)
        faces = [self._face(image, gray, box) for box in self.boxes(gray)]
        if faces:
            return faces
        found = {turn: self._turned(image, gray, turn) for turn in ROTATIONS}

        def held(turn: float, face: Face) -> bool:
            near = [t for t in ROTATIONS if abs(t - turn) == 10]
            return any(_same_place(face, other) for t in near for other, _ in found[t])

        kept = {t: [(f, w) for f, w in fs if held(t, f)] for t, fs in found.items()}
        # the turn with the largest face (then the cascade's surest): a turn the wrong way
        # round fires, if at all, on a small pattern inside the face (seen on a face behind
        # glasses), the right one on the whole face
        best = max(
            kept.values(),
            key=lambda fs: max(((f.box[2] * f.box[3], w) for f, w in fs), default=(-1, 0.0)),
        )
        return [face for face, _ in best]

    def _face(self, image: np.ndarray, gray: np.ndarray, box) -> Face:
        eyes, angle = self._eye_angle(gray, box)
        return Face(box, eyes, angle, self.crop(image, box, angle))

    def _eye_angle(self, gray: np.ndarray, box):
        eyes = self.eyes(gray, box)
        if eyes is None:
            return None, 0.0
        (lx, ly), (rx, ry) = eyes
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        return (None, 0.0) if abs(angle) > MAX_TILT else (eyes, angle)

    def _turned(self, image: np.ndarray, gray: np.ndarray, turn: float) -> list[tuple[Face, float]]:
        """The faces the detector finds in the photo turned by `turn` degrees about its
        centre, in the photo's own coordinates: each box centred where its face is, the
        eyes mapped back, the crop rotated by the turn (plus the eyes' own tilt)."""
        import cv2

        h, w = gray.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1.0)
        back = cv2.invertAffineTransform(m)
        turned = cv2.warpAffine(gray, m, (w, h), borderMode=cv2.BORDER_REPLICATE)

        def unturn(x: float, y: float) -> tuple[float, float]:
            return (
                back[0, 0] * x + back[0, 1] * y + back[0, 2],
                back[1, 0] * x + back[1, 1] * y + back[1, 2],
            )

        faces = []
        for (bx, by, bw, bh), weight in self.scored_boxes(
            turned, self.min_neighbors * TURNED_NEIGHBOURS
        ):
            eyes, tilt = self._eye_angle(turned, (bx, by, bw, bh))
            cx, cy = unturn(bx + bw / 2, by + bh / 2)
            box = (round(cx - bw / 2), round(cy - bh / 2), bw, bh)
            if eyes is not None:
                eyes = (unturn(*eyes[0]), unturn(*eyes[1]))
            angle = turn + tilt
            face = Face(box, eyes, angle, self.crop(image, box, angle), searched_at=turn)
            faces.append((face, weight))
        return faces


def _same_place(a: Face, b: Face) -> bool:
    """Two finds of one face: centres within a third of the smaller box."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = a.box, b.box
    near = min(aw, bw) / 3
    return abs(ax + aw / 2 - bx - bw / 2) < near and abs(ay + ah / 2 - by - bh / 2) < near


def annotate(photo: np.ndarray, faces: list[Face], labels: list[str]) -> np.ndarray:
    """The photo (RGB uint8) with each face's box, its eyes and its label drawn on it."""
    import cv2

    img = np.ascontiguousarray(photo[..., :3] if photo.ndim == 3 else np.stack([photo] * 3, -1))
    img = img.copy()
    side = min(img.shape[:2])
    thick = max(2, side // 250)
    scale = max(0.5, side / 900)
    for face, text in zip(faces, labels, strict=True):
        x, y, w, h = face.box
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 220, 0), thick)
        for ex, ey in face.eyes or ():
            cv2.circle(img, (round(ex), round(ey)), max(2, w // 30), (255, 200, 0), thick)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        cv2.rectangle(img, (x, ty - th - base), (x + tw + 4, ty + base), (0, 220, 0), -1)
        cv2.putText(
            img, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA
        )
    return img
