"""Readers for RAF-DB (basic) and AffectNet, mapped to our class order.

RAF-DB basic:  root/EmoLabel/list_patition_label.txt (or root/list_patition_label.txt), lines
               `train_00001.jpg 5`, labels 1-7 = surprise, fear, disgust, happiness, sadness,
               anger, neutral; images in root/Image/aligned/<stem>_aligned.jpg (100x100) or
               root/Image/original/<name> (data.image_folder). 7 classes, no contempt.
AffectNet:     root/train_set/images/<id>.jpg + root/train_set/annotations/<id>_exp.npy, the
               same under root/val_set; labels 0-7 = neutral, happy, sad, surprise, fear,
               disgust, anger, contempt; 8-10 (none, uncertain, no face) are dropped. 8 classes.

Neither has a public labelled test split beside train: RAF-DB's `test_*` images and
AffectNet's val_set are our test split, and our val split is a stratified, seeded slice of
train (data.val_fraction), so that selection never sees test. Images are read as grayscale
like FER+ (data.image_size resizes them on read). Without crowd votes, the PDLS prior is
the FER+ vote prior restricted to the dataset's classes (rows renormalised).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nrfer.data.labels import ferplus_prior
from nrfer.data.types import (
    EMOTIONS,
    DataFormatError,
    FERData,
    FERSplit,
    read_text,
    refuse_repeat,
)

# dataset label -> our class name
RAFDB_LABELS = {
    1: "surprise",
    2: "fear",
    3: "disgust",
    4: "happiness",
    5: "sadness",
    6: "anger",
    7: "neutral",
}
AFFECTNET_LABELS = {
    0: "neutral",
    1: "happiness",
    2: "sadness",
    3: "surprise",
    4: "fear",
    5: "disgust",
    6: "anger",
    7: "contempt",
}
CLASSES_7 = tuple(e for e in EMOTIONS if e != "contempt")  # our order, minus contempt
LIST_FILE = "list_patition_label.txt"  # sic: RAF-DB's own spelling


def read_image(path: Path, size: int | None) -> np.ndarray:
    if not path.is_file():
        raise DataFormatError(f"image {path} does not exist")
    try:
        with Image.open(path) as opened:
            img = opened.convert("L")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"image {path} cannot be decoded: {e}") from None


def stack(images: list[np.ndarray], what: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataFormatError(
            f"{what}: images of different sizes {sorted(shapes)[:3]}; set data.image_size "
            "to resize them on read"
        )
    return np.stack(images)[:, None]


def make_split(images: np.ndarray, labels: np.ndarray, k: int) -> FERSplit:
    labels = labels.astype(np.int64)
    return FERSplit(images, labels, np.eye(k, dtype=np.float32)[labels])


def carve_val(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask: a stratified, seeded `fraction` of each class (at least one image of
    every class with two or more)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        n = max(1, round(fraction * len(idx)))
        mask[rng.choice(idx, n, replace=False)] = True
    return mask


def assemble(
    train_x, train_y, test_x, test_y, class_names, fraction, seed, source, files
) -> FERData:
    k = len(class_names)
    val = carve_val(train_y, fraction, seed)
    return FERData(
        train=make_split(train_x[~val], train_y[~val], k),
        val=make_split(train_x[val], train_y[val], k),
        test=make_split(test_x, test_y, k),
        class_names=class_names,
        label_mode="majority",
        source=source,
        meta={"prior": ferplus_prior(class_names), "source_files": files},
    )


def read_rafdb(
    root: str | Path,
    image_folder: str = "aligned",
    image_size: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> FERData:
    root = Path(root)
    candidates = [root / "EmoLabel" / LIST_FILE, root / LIST_FILE]
    list_file = next((p for p in candidates if p.is_file()), None)
    if list_file is None:
        raise DataFormatError(
            f"RAF-DB: no {LIST_FILE} in {root}/EmoLabel or {root} (RAF-DB basic layout)"
        )
    if image_folder not in ("aligned", "original"):
        raise DataFormatError(
            f"RAF-DB: data.image_folder must be aligned or original, got {image_folder!r}"
        )
    rows: dict = {"train": ([], []), "test": ([], [])}
    seen: dict[str, int] = {}
    for n, line in enumerate(read_text(list_file).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{list_file}:{n}"
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataFormatError(f"{where}: expected '<image name> <label 1-7>', got {line!r}")
        name, label = parts[0], int(parts[1])
        refuse_repeat(seen, name, n, list_file)
        if label not in RAFDB_LABELS:
            raise DataFormatError(f"{where}: label {label} is not in 1-7")
        split = name.split("_", 1)[0]
        if split not in rows:
            raise DataFormatError(f"{where}: image name {name!r} starts neither train_ nor test_")
        stem = Path(name).stem
        path = (
            root / "Image" / "aligned" / f"{stem}_aligned.jpg"
            if image_folder == "aligned"
            else root / "Image" / "original" / name
        )
        rows[split][0].append(read_image(path, image_size))
        rows[split][1].append(CLASSES_7.index(RAFDB_LABELS[label]))
    for split, (images, _) in rows.items():
        if not images:
            raise DataFormatError(f"{list_file}: no {split}_ images listed")
    (trx, try_), (tex, tey) = rows["train"], rows["test"]
    return assemble(
        stack(trx, f"{root} train"),
        np.array(try_),
        stack(tex, f"{root} test"),
        np.array(tey),
        CLASSES_7,
        val_fraction,
        seed,
        f"rafdb:{root}:{image_folder}",
        [str(list_file.resolve())],
    )


def read_exp(path: Path) -> int:
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: unreadable annotation: {e}") from None
    try:
        return int(str(value.item() if hasattr(value, "item") else value))
    except (TypeError, ValueError):
        raise DataFormatError(f"{path}: expression {value!r} is not an integer") from None


def read_affectnet_split(folder: Path, size: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    images_dir, ann_dir = folder / "images", folder / "annotations"
    for d in (images_dir, ann_dir):
        if not d.is_dir():
            raise DataFormatError(f"AffectNet: {d} does not exist (images/ + annotations/)")
    images, labels, dropped = [], [], 0
    for ann in sorted(ann_dir.glob("*_exp.npy"), key=lambda p: (len(p.name), p.name)):
        label = read_exp(ann)
        if label not in AFFECTNET_LABELS:  # 8 none, 9 uncertain, 10 no face
            dropped += 1
            continue
        ident = ann.name[: -len("_exp.npy")]
        path = next(
            (
                images_dir / f"{ident}{ext}"
                for ext in (".jpg", ".png", ".jpeg")
                if (images_dir / f"{ident}{ext}").is_file()
            ),
            images_dir / f"{ident}.jpg",
        )
        images.append(read_image(path, size))
        labels.append(EMOTIONS.index(AFFECTNET_LABELS[label]))
    if not images:
        raise DataFormatError(f"AffectNet: no annotated images with labels 0-7 in {folder}")
    return stack(images, str(folder)), np.array(labels), dropped


def read_affectnet(
    root: str | Path, image_size: int | None = None, val_fraction: float = 0.1, seed: int = 0
) -> FERData:
    root = Path(root)
    trx, try_, drop_tr = read_affectnet_split(root / "train_set", image_size)
    tex, tey, drop_te = read_affectnet_split(root / "val_set", image_size)
    data = assemble(trx, try_, tex, tey, EMOTIONS, val_fraction, seed, f"affectnet:{root}", [])
    data.meta["dropped_labels_over_7"] = drop_tr + drop_te
    return data
