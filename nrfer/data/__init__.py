"""FER data: readers for the real formats and a synthetic FER+ generator, all -> FERData."""

from __future__ import annotations

from pathlib import Path

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
    "load_data",
    "prior_from_votes",
    "synthetic_root",
]

DATASETS: Registry = Registry("dataset")


def synthetic_root(cfg) -> Path:
    s = cfg.synthetic
    return Path(cfg.root or f"data/synthetic-{s.seed}-{s.n_train}-{s.n_val}-{s.n_test}")


@DATASETS.register("synthetic")
def _synthetic(cfg) -> FERData:
    from nrfer.data.ferplus import read_ferplus
    from nrfer.data.synthetic import ensure_synthetic

    s = cfg.synthetic
    root = ensure_synthetic(synthetic_root(cfg), s.seed, s.n_train, s.n_val, s.n_test)
    data = read_ferplus(root, cfg.label_mode)
    data.source = f"synthetic:{root}"
    return data


@DATASETS.register("ferplus")
def _ferplus(cfg) -> FERData:
    from nrfer.data.ferplus import read_ferplus

    return read_ferplus(cfg.root, cfg.label_mode)


@DATASETS.register("folders")
def _folders(cfg) -> FERData:
    from nrfer.data.folders import read_folders

    return read_folders(cfg.root, cfg.label_mode, cfg.label_file)


def load_data(cfg) -> FERData:
    """cfg: nrfer.config.DataConfig."""
    return DATASETS.get(cfg.dataset)(cfg)
