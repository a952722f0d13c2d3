"""The checks a sweep passes before anything starts, shared by the run and `--dry-run` so the
two cannot drift: the data and weights, the storage folder (writable, with room) and the
MLflow store (a URI MLflow can use, writable). Each refusal is one line naming the file,
folder or key; nothing here writes anything that stays.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from nrfer.errors import ConfigError

MIN_FREE = 200 * 2**20  # a sweep's Tune state, checkpoints and records need at least this


def preflight(spec, storage: Path, uri: str | None) -> str:
    """Every check before a sweep (or its dry run) starts; returns the tracking URI to use."""
    from sweep.tracking import check_tracking_uri, tracking_uri

    check_data(spec)
    check_pretrained(spec)
    check_storage(storage)
    return check_tracking_uri(tracking_uri(uri), "--tracking-uri")


def storage_dir(storage: str | None) -> Path:
    """The storage folder, absolute. A URI (s3://, gs://, ...) is refused with the reason:
    the sweep's ledger holds locks (flock), hard-linked first-writer-wins records and
    atomic renames, which an object store does not give; on a cluster, --storage is a
    filesystem that every node mounts at the same path (docs/cluster.md)."""
    given = storage or os.environ.get("NRFER_STORAGE", "runs/sweeps")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", given)
    if scheme:
        source = "--storage" if storage else "NRFER_STORAGE"
        raise ValueError(
            f"{source} {given!r}: an object store ({scheme.group(1)}://) cannot hold a sweep "
            "yet: its ledger needs file locks and atomic renames; give a folder that every "
            "Ray node mounts at the same path (NFS, CephFS, Lustre, EFS, ...); checkpoints "
            "worth keeping go to MLflow's artifact store, which may be S3 (docs/cluster.md)"
        )
    return Path(given).resolve()


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.1f} GiB"


def check_storage(storage: Path) -> None:
    """The storage folder, or before it exists its nearest existing parent, takes a file
    (a probe, deleted at once: a read-only mount refuses even root, which chmod does not)
    and has MIN_FREE free."""
    existing = storage
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"storage path {storage}: {existing} is a file, not a folder")
    probe = existing / f".nrfer-write-probe-{os.getpid()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"storage path {storage} is not writable ({existing}: {e.strerror or e}); "
            "give another --storage"
        ) from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE:
        raise ConfigError(
            f"storage path {storage} has {mib(free)} free; a sweep needs at least "
            f"{mib(MIN_FREE)} there (Tune's state, checkpoints): free some or give another "
            "--storage"
        )


def check_data(spec) -> None:
    """Every data config a trial may train with (each SR stage it may ask for), checked by
    its dataset's own reader (nrfer.data.check_root) before Ray starts."""
    from nrfer.data import DataFormatError, check_root

    data = spec.trial_config({}).data  # the data section with its defaults
    configs = [data] + [data.model_copy(update={"sr": sr}) for sr in spec.sr_settings()]
    for cfg in configs:
        try:
            check_root(cfg)
        except DataFormatError as e:
            raise DataFormatError(f"{spec.source}: {e}") from None


def check_pretrained(spec) -> None:
    """Weights must exist for every backbone the space can sample, before Ray starts."""
    from nrfer.data import DataFormatError
    from nrfer.models.pretrained import HUB, PretrainedError, resolve_weights

    pretrained = spec.fixed.get("model", {}).get("pretrained")
    if not pretrained:
        return
    backbones = spec.backbones()
    found, missing = [], []
    for backbone in backbones:
        try:
            found.append((backbone, resolve_weights(pretrained, backbone)))
        except PretrainedError as e:
            missing.append(str(e))
    if missing:
        fetch = (
            f"\n  fetch them once, before the sweep: nrfer weights fetch --space {spec.source}"
            if pretrained == HUB
            else ""
        )
        raise DataFormatError(
            f"{spec.source}: fixed.model.pretrained: no weights for {len(missing)} of the "
            f"{len(backbones)} backbones this space can sample:\n  " + "\n  ".join(missing) + fetch
        )
    print("pretrained weights:")
    for backbone, path in found:
        print(f"  {backbone:40s} {path}")
