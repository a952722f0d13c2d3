"""The version guard of the compat shims: each is registered with the package it reaches
into and what public API it stands in for; under a version other than the one it was
checked on, its probe runs before its first use."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

log = logging.getLogger("nrfer.sweep")
F = TypeVar("F", bound=Callable[..., Any])

# The minor series each shim was written for and the suite ran on (pyproject.toml pins them).
CHECKED_ON = {"ray": "2.60", "optuna": "5.1", "mlflow": "3.17"}


class CompatError(RuntimeError):
    """A private internal a shim relies on has moved: the message names the shim."""


@dataclass(frozen=True)
class Shim:
    name: str  # module.function
    package: str  # the distribution reached into: ray, optuna, mlflow
    missing: str  # the public API that would make the shim unnecessary
    probe: Callable[[], None]  # raises (AttributeError, AssertionError, ...) when it moved


SHIMS: dict[str, Shim] = {}
_CHECKED: set[str] = set()


def installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def series(v: str) -> str:
    return ".".join(v.split(".")[:2])


def problem(s: Shim) -> str | None:
    """What the shim's probe found wrong with the installed package, or None."""
    try:
        s.probe()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def compat_error(s: Shim, found: str, what: str) -> CompatError:
    return CompatError(
        f"{s.name}: written for {s.package} {CHECKED_ON[s.package]}.x, running on {s.package} "
        f"{found}, whose internals moved ({what}); the shim stands in for a missing public "
        f"API ({s.missing}): update it in sweep/compat, or install {s.package} "
        f"{CHECKED_ON[s.package]}.x"
    )


def check(s: Shim, found: str | None = None) -> None:
    """Under a version series other than CHECKED_ON, run the shim's probe: a CompatError when
    it fails, one warning when it passes. `found`: the installed version (default: looked up)."""
    found = found or installed(s.package)
    if series(found) != CHECKED_ON[s.package]:
        what = problem(s)
        if what is not None:
            raise compat_error(s, found, what)
        log.warning(
            "%s was checked on %s %s.x; %s %s passes its probe",
            s.name,
            s.package,
            CHECKED_ON[s.package],
            s.package,
            found,
        )
    _CHECKED.add(s.name)


def shim(package: str, missing: str, probe: Callable[[], None]) -> Callable[[F], F]:
    """Register a function as a shim into `package`: version-checked before its first call,
    and an AttributeError inside it (an internal that moved) raised as a CompatError."""

    def register(fn: F) -> F:
        s = Shim(f"{fn.__module__}.{fn.__name__}", package, missing, probe)
        if s.name in SHIMS:
            raise ValueError(f"shim {s.name} is registered twice")
        SHIMS[s.name] = s

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if s.name not in _CHECKED:
                check(s)
            try:
                return fn(*args, **kwargs)
            except AttributeError as e:
                raise compat_error(s, installed(package), f"AttributeError: {e}") from e

        return guarded  # type: ignore[return-value]

    return register
