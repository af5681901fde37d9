"""One small registry per kind of pluggable thing (tasks, architectures, weighting methods, datasets).

Filled by decorators such as ``@register_weighting("pcgrad")``; ``available()`` feeds both the
dashboard's select boxes and the tests' parametrisation.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from mtl_core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a plain name to a class or factory; a duplicate name is an error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            try:
                obj.name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def get(self, name: str, field: str | None = None) -> T:
        if name not in self._items:
            raise ConfigError(
                field or self.kind,
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.available())}",
            )
        return self._items[name]

    def prefer(self, *names: str) -> None:
        """Offer ``names`` first (the dashboard lists entries in registry order)."""
        self._items = {**{n: self._items[n] for n in names if n in self._items}, **self._items}

    def available(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
