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

    def unregister(self, name: str) -> None:
        """Forget ``name`` (a test that registered a plugin of its own puts the registry back)."""
        self._items.pop(name, None)

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


PLUGINS_ENV = "MTL_PLUGINS"
loaded_plugins: set[str] = set()


def load_plugins() -> list[str]:
    """Import the modules named in ``$MTL_PLUGINS`` (comma-separated: dotted module names, or
    paths of ``.py`` files), once each, so the tasks, methods, architectures or datasets they
    register appear wherever the built-in ones do: the CLI's ``list``, Setup's pickers, training.

    A plugin that cannot be imported raises a :class:`ConfigError` naming it: a task silently
    missing from every picker would be harder to understand than a clear error at start-up.
    """
    import importlib
    import importlib.util
    import os
    import sys
    from pathlib import Path

    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    for name in names:
        if name in loaded_plugins:
            continue
        loaded_plugins.add(name)  # before importing: a plugin importing a registry must not recurse
        try:
            if name.endswith(".py"):
                path = Path(name).expanduser().resolve()
                module_name = f"mtl_plugin_{path.stem}"
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            else:
                importlib.import_module(name)
        except Exception as e:
            loaded_plugins.discard(name)
            raise ConfigError(PLUGINS_ENV, f"the plugin {name!r} could not be imported ({type(e).__name__}: {e}); "
                              f"fix it, or remove it from {PLUGINS_ENV}") from e
    return names
