"""What a viewer's session of a shared dashboard holds instead of the RunManager: named reads, and
nothing else. No Streamlit here.

:class:`ViewerManager` and the :class:`ViewerStore` it hands out are allowlists
(:data:`MANAGER_READS`, :data:`STORE_READS`: what the pages and the engine's readers they call ask
of the manager and its store in a viewer's session). Any other name raises
:class:`ui.access.AccessError` before anything happens, so a page that forgot a guard, or a study
runner built on a viewer's manager, refuses before its first write. Neither keeps the manager or
its store as an attribute; the store's reads run on a read-only connection of their own, so a
writer slipped into the allowlist would still fail in the database, not change the runs.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from mtl_core.store import postgres
from mtl_core.store.store import RunStore
from ui.access import MANAGER_COMMANDS, AccessError, refusal

# what a viewer's session reads off the RunManager (pages/, ui/ and mtl_core.studies.runner's reads)
MANAGER_READS: frozenset[str] = frozenset({"is_active", "max_concurrent", "queue", "store"})
# what it reads off the run store: the pages, and the readers they hand it to (StudyStore's get, list
# and plan, summarize, level_curves, model_checkpoint, Ensemble.from_runs, StudyRunner.searching)
STORE_READS: frozenset[str] = frozenset({
    "chosen_checkpoint", "events", "find_runs", "get_run", "latest_checkpoint", "list_runs", "metrics",
    "metrics_after", "metrics_history", "owners", "query", "root", "run_dir",
})


def _refused(kind: str, name: str) -> AccessError:
    if kind == "manager" and name in MANAGER_COMMANDS:
        return AccessError(refusal(MANAGER_COMMANDS[name]))
    return AccessError(f"View only: a viewer's session of a shared dashboard reads runs and cannot use the run "
                       f"{kind}'s {name!r}. Ask the dashboard's owner, or unlock control with the owner's secret "
                       "in the sidebar.")


def _call(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as a plain function: a bound method would hand out its object as ``__self__``."""
    def read(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    read.__name__, read.__doc__ = getattr(method, "__name__", "read"), method.__doc__
    return read


class _Reads:
    """Named reads of an object, kept as closures over it: no attribute holds the object."""

    __slots__ = ("_get", "_names")
    _kind = "object"

    def __init__(self, source: object, names: Iterable[str], special: dict[str, Any] | None = None) -> None:
        names = frozenset(names)
        special = dict(special or {})
        kind = self._kind

        def get(name: str) -> Any:
            if name not in names:
                raise _refused(kind, name)
            if name in special:
                return special[name]
            value = getattr(source, name)
            return _call(value) if callable(value) else value

        object.__setattr__(self, "_get", get)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # Python's own protocols (copy, pickle, ...): plainly absent
            raise AttributeError(name)
        return object.__getattribute__(self, "_get")(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise _refused(self._kind, name)

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_names"))


class _ReadOnlyRunStore(RunStore):
    """The run store on a read-only connection per thread (SQLite's ``mode=ro``, or a PostgreSQL
    session whose every transaction is read-only): what it is asked to write fails in the database
    itself. Made without creating or migrating anything."""

    def __init__(self, root: Path, url: str | None = None) -> None:  # not RunStore's: that one migrates
        self.root = Path(root)
        self.url = url
        self.backend = "postgresql" if url else "sqlite"
        self.path = None if url else self.root / "runs.sqlite"
        self._local = threading.local()

    def _connect(self) -> Any:
        if self.url:
            return postgres.Connection(self.url, read_only=True)
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.row_factory = sqlite3.Row
        return conn

    def _tx(self) -> NoReturn:  # type: ignore[override]
        raise _refused("store", "transaction")


class ViewerStore(_Reads):
    """The run store as a viewer's session sees it: :data:`STORE_READS` only, on a read-only connection."""

    __slots__ = ()
    _kind = "store"

    def __init__(self, store: RunStore) -> None:
        super().__init__(_ReadOnlyRunStore(store.root, store.url), STORE_READS)


class ViewerManager(_Reads):
    """The RunManager as a viewer's session sees it: :data:`MANAGER_READS` only; its ``store`` is a
    :class:`ViewerStore`. Every command (and anything else) raises :class:`AccessError`."""

    __slots__ = ()
    _kind = "manager"

    def __init__(self, manager: Any) -> None:
        super().__init__(manager, MANAGER_READS, {"store": ViewerStore(manager.store)})
