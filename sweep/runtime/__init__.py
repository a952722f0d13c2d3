"""The sweep's runtime: what runs while a sweep runs, on the driver (driver, search,
early-stopping rules, lifecycle callback, ledger, retention, console, disk guard) and in each trial
(trainable). Commands reach it only through the names below (tests/test_layers.py keeps it
so); they are imported on first use, so a command's `--help` does not start Ray."""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC = {
    "run_sweep": "sweep.runtime.driver",
    "SweepSummary": "sweep.runtime.summary",
    "SweepFinished": "sweep.runtime.resume",
    "preflight": "sweep.runtime.checks",
    "storage_dir": "sweep.runtime.checks",
    "check_data": "sweep.runtime.checks",
    "check_pretrained": "sweep.runtime.checks",
    "init_ray": "sweep.runtime.local_ray",
    "launched": "sweep.runtime.startup",
    "phase": "sweep.runtime.startup",
    "LOCAL_RAY_IP": "sweep.runtime.local_ray",
    "rule_for": "sweep.runtime.stopping",
}
__all__ = sorted(PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'sweep.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(PUBLIC[name]), name)
