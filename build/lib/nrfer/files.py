"""Writing a file so that a crash never leaves half of it: every state file, record,
checkpoint and cache array of nrfer and the sweep goes through `atomic_file`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """`data` written to `path` through `atomic_file`; returns `path`."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)
