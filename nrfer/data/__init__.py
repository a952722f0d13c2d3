"""FER data: readers for the real formats and a synthetic FER+ generator, all -> FERData."""

from __future__ import annotations

from pathlib import Path

from nrfer.data.ferplus import find_ferplus_files, read_ferplus
from nrfer.data.ferplus_folders import MS_FOLDERS, is_ferplus_tree, read_ferplus_folders
from nrfer.data.folders import read_folders
from nrfer.data.rafdb_affectnet import CLASSES_7, read_affectnet, read_rafdb
from nrfer.data.synthetic import ensure_synthetic
from nrfer.data.types import (
    EMOTIONS,
    NUM_CLASSES,
    SPLITS,
    DataFormatError,
    FERData,
    FERSplit,
    prior_from_votes,
)
from nrfer.registry import Registry

__all__ = [
    "DATASETS",
    "EMOTIONS",
    "NUM_CLASSES",
    "SPLITS",
    "DataFormatError",
    "FERData",
    "FERSplit",
    "check_root",
    "load_data",
    "prior_from_votes",
    "synthetic_root",
]

# Each entry's facts, known before any file is read (the dry run's model check and the
# launcher's pre-flight use them): `class_names` in output order, `channels` of the images
# (None: as the image files are; FER+ folders hold grayscale PNGs), `root` what data.root
# names ("folder"; "ferplus": fer2013.csv + fer2013new.csv, or Microsoft's folders; None:
# optional, a cache folder), and `check`: the reader's own look at data.root, cheap (no
# image is read), raising DataFormatError, so a sweep refuses a wrong root before Ray starts.
DATASETS: Registry = Registry("dataset")


def _no_check(cfg) -> None:
    """A root the reader makes itself (the synthetic data's cache folder)."""


def _folder(cfg) -> None:
    if not Path(cfg.root or "").is_dir():
        raise DataFormatError(f"data.root {cfg.root!r} is not a folder")


def _microsoft_labels(cfg) -> None:
    root = Path(cfg.root or "")
    missing = [d for d in MS_FOLDERS.values() if not (root / d / "label.csv").is_file()]
    if missing:
        raise DataFormatError(
            f"data.root {str(root)!r}: Microsoft's FERPlus folders need "
            f"{', '.join(f'{d}/label.csv' for d in missing)}"
        )


def _ferplus_root(cfg) -> None:
    root = Path(cfg.root or "")
    if is_ferplus_tree(root) and not (root / "fer2013.csv").is_file():
        _microsoft_labels(cfg)
    elif not is_ferplus_tree(root):
        try:
            find_ferplus_files(root)
        except DataFormatError as e:
            raise DataFormatError(
                f"data.root: {e}. Or try the embedded demo: python launch.py --space demo.yaml"
            ) from None


def _folders_root(cfg) -> None:
    _folder(cfg)
    if _microsoft_tree(cfg):
        _microsoft_labels(cfg)


def check_root(cfg) -> None:
    """cfg: nrfer.config.DataConfig. Whether its data.root (and a learned SR stage's weights)
    are there as its reader needs them, without reading images; DataFormatError naming the
    key and what is missing."""
    DATASETS.props(cfg.dataset)["check"](cfg)
    if cfg.sr.method == "model" and not Path(cfg.sr.weights or "").is_file():
        raise DataFormatError(
            f"data.sr.weights {cfg.sr.weights!r} does not exist "
            "(train ours with python -m nrfer.sr.train, or export DIC to TorchScript)"
        )


def face_size(cfg) -> int | None:
    """The side of the faces a data config reads, when known before reading them: its
    image_size (rafdb, affectnet), else its kind's (48 for FER+ and the synthetic set)."""
    return cfg.image_size or DATASETS.props(cfg.dataset)["face_size"]


def synthetic_root(cfg) -> Path:
    s = cfg.synthetic
    return Path(cfg.root or f"data/synthetic-{s.seed}-{s.n_train}-{s.n_val}-{s.n_test}")


# face_size: the side of the faces as read, where the kind fixes it (FER2013's 48 px)
@DATASETS.register(
    "synthetic", class_names=EMOTIONS, channels=1, root=None, check=_no_check, face_size=48
)
def _synthetic(cfg) -> FERData:
    s = cfg.synthetic
    root = ensure_synthetic(synthetic_root(cfg), s.seed, s.n_train, s.n_val, s.n_test)
    data = read_ferplus(root, cfg.label_mode)
    data.source = f"synthetic:{root}"
    return data


def _microsoft_tree(cfg) -> bool:
    """A root holding Microsoft's FER2013Train/ ... folders and no CSV of another layout:
    read as `ferplus_folders` whatever FER+ dataset name was given."""
    root = Path(cfg.root)
    return is_ferplus_tree(root) and not (
        (root / "fer2013.csv").is_file() or (cfg.dataset == "folders" and any(root.glob("*.csv")))
    )


@DATASETS.register(
    "ferplus", class_names=EMOTIONS, channels=1, root="ferplus", check=_ferplus_root, face_size=48
)
def _ferplus(cfg) -> FERData:
    if _microsoft_tree(cfg):
        return _ferplus_folders(cfg)
    return read_ferplus(cfg.root, cfg.label_mode)


@DATASETS.register(
    "ferplus_folders",
    class_names=EMOTIONS,
    channels=1,
    root="folder",
    check=_microsoft_labels,
    face_size=48,
)
def _ferplus_folders(cfg) -> FERData:
    return read_ferplus_folders(cfg.root, cfg.label_mode, cfg.label_file)


@DATASETS.register(
    "folders",
    class_names=EMOTIONS,
    channels=None,
    root="folder",
    check=_folders_root,
    face_size=None,  # the images' own size
)
def _folders(cfg) -> FERData:
    if _microsoft_tree(cfg):
        return _ferplus_folders(cfg)
    return read_folders(cfg.root, cfg.label_mode, cfg.label_file)


@DATASETS.register(
    "rafdb", class_names=CLASSES_7, channels=1, root="folder", check=_folder, face_size=None
)
def _rafdb(cfg) -> FERData:
    return read_rafdb(cfg.root, cfg.image_folder, cfg.image_size, cfg.val_fraction, cfg.split_seed)


@DATASETS.register(
    "affectnet", class_names=EMOTIONS, channels=1, root="folder", check=_folder, face_size=None
)
def _affectnet(cfg) -> FERData:
    return read_affectnet(cfg.root, cfg.image_size, cfg.val_fraction, cfg.split_seed)


def load_data(cfg, sr: bool = True) -> FERData:
    """cfg: nrfer.config.DataConfig. With `sr` (and data.sr.method set), the images are the
    super-resolved ones from the SR cache (built on first use)."""
    data = DATASETS.get(cfg.dataset)(cfg)
    if sr and cfg.sr.method != "none":
        from nrfer.sr import apply_sr  # torch: imported only when an SR stage is on

        data = apply_sr(data, cfg.sr)
    return data
