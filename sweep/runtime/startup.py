"""The sweep's clock: elapsed time counts from the process's launch, and each start-up phase
(the checks, Ray, the data, the MLflow parent run, the searcher) says what it did and how
long it took, so no minute passes in silence. Light: importable before Ray or torch."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def launched() -> float:
    """When this process started (wall clock): every elapsed time counts from the launch."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # no psutil or no /proc: from now
        return time.time()


@contextmanager
def phase(
    what: str, since: float | None = None, stream=None, shown: bool = True
) -> Iterator[list[str]]:
    """One line for a start-up phase once it is done: `[0m14s] Ray: ... (8.2 s)`, elapsed
    from the launch (none when not `shown`: a phase with nothing to say in this run). The
    block may append words to the list it is given (what it found)."""
    since = launched() if since is None else since
    t0 = time.perf_counter()
    found: list[str] = []
    yield found
    took = time.perf_counter() - t0
    if not shown:
        return
    detail = f": {', '.join(found)}" if found else ""
    out = stream or sys.stdout
    out.write(f"[{clock(time.time() - since)}] {what}{detail} ({took:.1f} s)\n")
    out.flush()
