"""Writing a file so that a crash never leaves half of it: every state file, record,
checkpoint and cache array of nrfer and the sweep goes through `atomic_file`."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from nrfer.errors import DiskFull


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", fsync: bool = False) -> Iterator[IO]:
    """Open a new temp file beside `path` (same folder, so the rename stays on one file
    system); on a clean exit it replaces `path` in one rename, on an error it is removed.
    Readers see the old file or the new one, never a part. `fsync`: flushed to disk first
    (checkpoints: a power cut after the rename must not leave an empty file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # torch.save reports a full disk as a RuntimeError ("unexpected pos ..."): the
        # folder's free space, taken while the partial file still holds it, tells
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        full = full or (isinstance(e, RuntimeError) and _free(path.parent) < FULL_BELOW)
        Path(tmp).unlink(missing_ok=True)
        if full and not isinstance(e, DiskFull):
            raise disk_full(path) from e
        raise


FULL_BELOW = 1 << 20  # a write that fails with under 1 MiB left has run out of space


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return FULL_BELOW


def disk_full(path: Path) -> DiskFull:
    """The ENOSPC of writing `path` as one line naming it and its folder's free space
    (Python's own is "[Errno 28] No space left on device", without a path)."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:,.2f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFull(
        errno.ENOSPC,
        f"no space left to write {path} ({path.parent}: {free}); free some space there, "
        "then continue where it stopped (--resume)",
    )


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """`data` written to `path` through `atomic_file`; returns `path`."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temp path beside `path` (ending in the same suffix, so writers that choose the
    format by name still can) for code that writes by file name (ONNX, PIL, matplotlib);
    on a clean exit it replaces `path` in one rename, on an error it is removed and `path`
    is left as it was. A full disk is a DiskFull naming `path` and the free space."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        full = full or (not isinstance(e, OSError) and "No space left" in str(e))
        if full and not isinstance(e, DiskFull):
            raise disk_full(path) from e
        raise


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (through links and relative parts); False when
    either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_own_input(out: str | Path, inputs: list[str | Path], flag: str) -> None:
    """A ValueError when the file a command is about to write is one of the files it reads:
    writing it would destroy the input."""
    for given in inputs:
        if same_file(out, given) or Path(out).resolve() == Path(given).resolve():
            raise ValueError(
                f"{flag} {out}: that is {given}, which this command reads; writing it would "
                "replace it. Give another path"
            )


def save_image(image, path: str | Path) -> Path:
    """A PIL image (or anything with .save(path)) written whole or not at all."""
    with atomic_path(path) as tmp:
        image.save(tmp)
    return Path(path)
