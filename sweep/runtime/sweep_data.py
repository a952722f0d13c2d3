"""The sweep's data, read once in the driver before any trial: the base config every
trial starts from (paths made absolute), the dataset per label mode, every SR cache a trial
may ask for (built here, so trials only read them), their identities for MLflow, and a
study's extra evaluation sets. Handed to trials through Ray's object store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nrfer.config import absolute_paths, make_config
from nrfer.data import FERData, load_data
from nrfer.data.identity import identity, sr_identity
from nrfer.sr import ensure_sr
from sweep.spec.space import SweepSpec


def resolve_base_config(spec: SweepSpec) -> dict:
    """The config every trial starts from, with every file and folder it names made absolute
    (Ray runs each trial in a folder of its own; relative paths mean where launch.py ran)."""
    base = absolute_paths(spec.base_config(), Path.cwd())
    base["train"] = {**base.get("train", {}), "num_threads": max(1, int(spec.resources.cpu))}
    data_cfg = make_config(base, spec.source).data
    base["data"] = {
        **base.get("data", {}),
        "sr": {
            **base["data"].get("sr", {}),
            "cache_dir": str(Path(data_cfg.sr.cache_dir).resolve()),
        },
    }
    return base


def build_sr_caches(
    spec: SweepSpec, base: dict, data: FERData, label_mode: str | None = None
) -> dict[str, dict]:
    """Build (or reuse) the SR cache of every SR setting a trial may ask for, once, before
    any trial runs: trials then only read them. Returns cache folder -> manifest."""
    builds = {}
    for sr in spec.sr_settings(base, label_mode):
        folder, manifest, built = ensure_sr(data, sr)
        print(f"SR cache {sr.method} x{sr.scale}: {'built' if built else 'reused'} {folder}")
        builds[str(folder)] = manifest
    return builds


def data_identities(data: FERData, sr_builds: dict[str, dict]) -> list[dict]:
    """What the sweep's trials train on (nrfer.data.identity): the data as read, then each
    SR stage built for them; logged as the runs' dataset inputs."""
    base = identity(data)
    return [base] + [
        sr_identity(base, m["method"], m["scale"], m, m["outputs"]["train"]["shape"][2:])
        for m in sr_builds.values()
    ]


def load_datasets(spec: SweepSpec, base: dict) -> tuple[dict, dict, dict]:
    """The data once per label mode the trials use (a study may compare them), before SR
    (each trial applies its SR stage from the caches built here). Returns (label mode ->
    FERData, SR cache folder -> manifest, label mode -> [data identity, its SR stages])."""
    data, builds, identities = {}, {}, {}
    for mode in spec.label_modes():
        raw = {**base, "data": {**base["data"], "label_mode": mode}}
        data[mode] = load_data(make_config(raw, spec.source).data, sr=False)
        mode_builds = build_sr_caches(spec, base, data[mode], mode)
        builds.update(mode_builds)
        identities[mode] = data_identities(data[mode], mode_builds)
    return data, builds, identities


def load_eval_sets(spec: SweepSpec) -> dict | None:
    """A study's extra evaluation sets, each read once here: name -> the split, its class
    names and the TTA (each run evaluates its best weights on them)."""
    if spec.study is None or not spec.study.eval_sets:
        return None
    out: dict[str, dict[str, Any]] = {}
    for ev in spec.study.eval_sets:
        raw = absolute_paths(
            {"data": {"dataset": ev.dataset, "root": ev.root, **ev.settings}}, Path.cwd()
        )
        data = load_data(
            make_config(raw, f"{spec.source}: study.eval_sets.{ev.name}").data, sr=False
        )
        out[ev.name] = {
            "split": data.split(ev.split),
            "class_names": data.class_names,
            "tta": ev.tta,
        }
        print(
            f"study: evaluation set {ev.name}: {data.source} {ev.split} ({len(out[ev.name]['split'])} faces)"
        )
    return out
