"""A tiny named registry: one per kind (losses, optimisers, schedulers, datasets, heads).

`register` rejects duplicates, `create` builds by name, and an unknown name is an error
that lists the valid names and the closest matches. Names in YAML are the registry keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry key; its message lists the valid names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"valid: {', '.join(sorted(valid))}{hint}"


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._props: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **props: Any) -> Callable[[T], T]:
        """Decorator; `props` are facts about the entry (e.g. needs_prior=True for a loss)."""

        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            self._props[name] = props
            return item

        return add

    def props(self, name: str) -> dict[str, Any]:
        self.get(name)  # an unknown name is the usual error
        return dict(self._props[name])

    def check(self, name: str) -> str:
        """`name` if registered, else UnknownNameError (for config validators)."""
        self.get(name)
        return name

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {suggest(name, self.names())}")
        return self._items[name]

    def create(self, name: str, **kwargs: Any) -> Any:
        factory = self.get(name)
        return factory(**{k: v for k, v in kwargs.items() if v is not None})  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
