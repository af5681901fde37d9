"""The run store's database: one connection per thread to SQLite (WAL) in the runs directory or
to the PostgreSQL server ``MTL_RUNS_DB`` names, write transactions, the wait for a lost PostgreSQL
connection, and the schema's versions and migrations. :class:`~mtl_core.store.store.RunStore`
holds the rows on top of it.

The schema is versioned with ``PRAGMA user_version`` (on PostgreSQL, the table ``mtl_schema``;
:data:`SCHEMA_VERSION`); opening a store applies the :data:`MIGRATIONS` it lacks, each in one
transaction, and refuses one written by a newer MTL Studio.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtl_core.errors import MTLError
from mtl_core.store import postgres
from mtl_core.store.ids import RUNS_DIR_ENV, default_runs_dir
from mtl_core.store.schema import MIGRATIONS, SCHEMA_VERSION, SCRIPTS


def _retried(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A store method that a lost PostgreSQL connection does not fail at once (see :meth:`Database.retry`)."""
    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Database, *args: Any, **kwargs: Any) -> Any:
            if not self.url:
                return method(self, *args, **kwargs)
            return self.retry(lambda: method(self, *args, **kwargs), what)
        return call
    return wrap


# what needs no database: the rest of a store's public methods wait out a lost connection
_NO_DATABASE = frozenset({"close", "retry", "transaction", "where"})


def retry_every_method(cls: type, exempt: Iterable[str] = ()) -> None:
    """Make every public method of ``cls`` (its bases' included) that reads or writes rows wait out
    a lost PostgreSQL connection; a method calling another waits once, not twice."""
    skip = _NO_DATABASE | set(exempt)
    for name in {n for base in cls.__mro__[:-1] for n, m in vars(base).items() if callable(m)}:
        if not name.startswith("_") and name not in skip:
            setattr(cls, name, _retried(name.replace("_", " "))(getattr(cls, name)))


class Database:
    """The connection side of the run store (see the module docstring)."""

    def __init__(self, runs_dir: str | os.PathLike | None = None, url: str | None = None) -> None:
        self.root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = postgres.check_url(url) if url else postgres.database_url()
        self.path = None if self.url else self.root / "runs.sqlite"
        self.backend = "postgresql" if self.url else "sqlite"
        self._local = threading.local()
        self._migrate()

    @property
    def where(self) -> str:
        """Where the rows are, for messages: the SQLite file, or the database's URL without its password."""
        return postgres.redact(self.url) if self.url else str(self.path)

    # -- connection and schema ----------------------------------------------------------
    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or (self.url and conn.broken):
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> Any:
        if self.url:
            return postgres.Connection(self.url)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        _set_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):  # a connection that was lost has nothing to roll back
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """One write transaction on this thread's connection (for the study store beside this one)."""
        return self._tx()

    def query(self, sql: str, args: tuple | list = ()) -> list[Any]:
        """Rows of a parameterised read on this thread's connection (SQLite's dialect, ``?`` placeholders)."""
        return self._conn().execute(sql, args).fetchall()

    def retry(self, fn: Callable[[], Any], what: str) -> Any:
        """``fn()``, retried while the database is away (PostgreSQL; see :func:`postgres.with_retry`)."""
        if not self.url or getattr(self._local, "retrying", False):
            return fn()
        self._local.retrying = True
        try:
            return postgres.with_retry(fn, self.url, self._reconnect, what)
        finally:
            self._local.retrying = False

    def _reconnect(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._conn()

    def schema_version(self) -> int:
        if self.url:
            return postgres.schema_version(self._conn())
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Bring the store to SCHEMA_VERSION, each migration in its own transaction. The version is
        read again under the write lock, so two processes opening a fresh store at once migrate it
        once; a store from a newer MTL Studio is refused untouched."""
        if self.url:
            postgres.migrate(self._conn(), self._tx, self._check_version, SCRIPTS[:SCHEMA_VERSION])
            return
        probe = sqlite3.connect(self.path, timeout=30)  # before any pragma that would write to it
        try:
            version = self._check_version(int(probe.execute("PRAGMA user_version").fetchone()[0]))
        finally:
            probe.close()
        if version == SCHEMA_VERSION:
            return
        while True:
            with self._tx() as c:
                version = self._check_version(int(c.execute("PRAGMA user_version").fetchone()[0]))
                if version == SCHEMA_VERSION:
                    return
                MIGRATIONS[version](c)
                c.execute("PRAGMA user_version = " + str(int(version) + 1))  # an int: a pragma takes no parameters

    def _check_version(self, version: int) -> int:
        if version > SCHEMA_VERSION:
            what = f"the database {self.where}" if self.url else f"the runs directory {self.root}"
            raise MTLError(f"{what} was written by a newer MTL Studio (run store schema "
                           f"{version}; this one knows up to {SCHEMA_VERSION}); upgrade MTL Studio to open it, or "
                           f"point --runs-dir / ${RUNS_DIR_ENV} at another directory. Nothing in it was changed.")
        return version

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _set_wal(conn: sqlite3.Connection, seconds: float = 30.0) -> None:
    """WAL journal mode. Switching a fresh database to it needs a moment alone with the file, and
    SQLite reports "locked" at once (its busy timeout does not apply) while another connection
    holds it: try again until ``seconds`` have passed."""
    deadline = time.time() + seconds
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.time() > deadline:
                raise
            time.sleep(0.02)
