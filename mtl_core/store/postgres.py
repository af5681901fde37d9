"""The run store on a PostgreSQL server (psycopg 3): what lets runs on many machines share one store.

``MTL_RUNS_DB=postgresql://user@host:5432/db`` selects it; without it the store is SQLite in the runs
directory (the embedded default). Checkpoints stay files under the runs directory, which every node
must read (a shared file system); the database names them.

The store's SQL is written once, for SQLite, with ``?`` placeholders; :func:`to_postgres` turns a
statement into PostgreSQL's, and the schema's migrations are the same scripts on both, translated:
``REAL`` becomes ``DOUBLE PRECISION`` (PostgreSQL's ``REAL`` holds 6 digits, not a time stamp),
``INTEGER PRIMARY KEY AUTOINCREMENT`` a ``BIGSERIAL`` key, and a table without a key of its own gets
``rowid BIGSERIAL`` as SQLite gives every table (the store reads rows "in the order written" by it).
The schema version SQLite keeps in ``PRAGMA user_version`` lives in a one-row table ``mtl_schema``.

A lost connection is retried with backoff for :data:`RETRY_ENV` seconds (default
:data:`RETRY_SECONDS`): a server restarted or a network that drops for a moment loses no run; past
that, :class:`StoreUnavailable` names the database (never its password) and the statement's purpose.
"""
from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mtl_core.errors import MTLError, StoreUnavailable
from mtl_core.store.schema import statements

DB_ENV = "MTL_RUNS_DB"
RETRY_ENV = "MTL_RUNS_DB_RETRY_S"
RETRY_SECONDS = 60.0
CONNECT_TIMEOUT_S = 10


def database_url() -> str | None:
    """The run store's database URL from ``MTL_RUNS_DB``, or None for the SQLite default."""
    url = os.environ.get(DB_ENV, "").strip()
    return url or None


def is_postgres(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://ann:***@host/db``): safe to print or log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def check_url(url: str) -> str:
    """``url`` when it names a PostgreSQL database; else an error that says what is accepted."""
    if not is_postgres(url):
        raise MTLError(f"{DB_ENV}={redact(url)!r} is not a PostgreSQL URL; use postgresql://user[:password]@host"
                       f"[:port]/database, or unset {DB_ENV} for the SQLite store in the runs directory")
    return url


def retry_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, RETRY_SECONDS)))
    except ValueError:
        return RETRY_SECONDS


# -- SQL: SQLite's dialect to PostgreSQL's -------------------------------------------------------
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+")
_CREATE_TABLE = re.compile(r"CREATE TABLE (IF NOT EXISTS )?(\w+) \((.*?)\);?$", re.S)


@functools.lru_cache(maxsize=512)
def to_postgres(sql: str) -> str:
    """One of the store's statements in PostgreSQL's dialect: ``%s`` for ``?`` (the store's SQL has no
    literal ``?`` or ``%``), no ``INDEXED BY`` (a SQLite hint), ``BEGIN`` for ``BEGIN IMMEDIATE``."""
    if "%" in sql:
        raise ValueError("a run store statement with a literal % would be misread by psycopg")
    sql = _INDEXED_BY.sub("", sql).replace("?", "%s")
    return "BEGIN" if sql.strip() == "BEGIN IMMEDIATE" else sql


def ddl_to_postgres(statement: str) -> str:
    """A schema migration's statement for PostgreSQL (see the module's docstring)."""
    s = re.sub(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", statement)
    s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
    m = _CREATE_TABLE.match(s.strip())
    if m and "PRIMARY KEY" not in m.group(3):
        s = f"CREATE TABLE {m.group(1) or ''}{m.group(2)} (rowid BIGSERIAL PRIMARY KEY, {m.group(3)})"
    return to_postgres(s)


# Beside the shared migrations: what SQLite has without asking. Its rowid ends every index entry, so
# metrics_by_rowid (run_id) serves "this run's rows after row N" as a range scan; here that needs the
# column in the index.
EXTRA_DDL: dict[int, tuple[str, ...]] = {
    4: ("CREATE INDEX metrics_after ON metrics (run_id, rowid)",),
}


# -- rows and connections ------------------------------------------------------------------------
class Row(tuple):
    """A row read by name or by position, as :class:`sqlite3.Row` (``dict(row)`` gives its columns)."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> tuple[str, ...]:
        return self._names


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": {n: i for i, n in enumerate(names)}})


def _named_rows(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    if cursor.description is None:
        return tuple
    cls = _row_class(tuple(c.name for c in cursor.description))
    return cls


class Cursor:
    """A psycopg cursor that takes the store's SQLite statements; ``row_factory = None`` gives plain
    tuples, as on a sqlite3 cursor (the store's fast path for long metric reads)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @property
    def row_factory(self) -> Any:
        return self._raw.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        from psycopg.rows import tuple_row
        self._raw.row_factory = tuple_row if factory is None else factory

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        self._raw.execute(to_postgres(sql), tuple(args) or None)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        self._raw.executemany(to_postgres(sql), [tuple(r) for r in rows])
        return self

    def fetchone(self) -> Any:
        return None if self._raw.description is None else self._raw.fetchone()

    def fetchall(self) -> list[Any]:  # a statement with no rows gives none, as on sqlite3
        return [] if self._raw.description is None else self._raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._raw.rowcount


class Connection:
    """One psycopg connection in autocommit mode, taking the store's statements as a sqlite3
    connection does (``execute`` returns a cursor; ``BEGIN``/``COMMIT`` are statements). ``read_only``:
    every transaction of the session is read-only, so a write fails in the server itself."""

    def __init__(self, url: str, read_only: bool = False) -> None:
        self.raw = connect(url, read_only)

    def cursor(self) -> Cursor:
        return Cursor(self.raw.cursor(row_factory=_named_rows))

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.cursor().execute(sql, args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Cursor:
        return self.cursor().executemany(sql, rows)

    @property
    def broken(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)

    def close(self) -> None:
        self.raw.close()


def connect(url: str, read_only: bool = False) -> Any:
    """A psycopg connection to ``url``, or :class:`StoreUnavailable` naming it (without password)."""
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - the lock installs it
        raise MTLError(f"{DB_ENV} names a PostgreSQL database, and psycopg (version 3) is not installed: "
                       "pip install 'psycopg[binary]'") from e
    try:
        conn = psycopg.connect(check_url(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        if read_only:  # a SET, not the URL's options: those may hold the user's own settings
            conn.execute("SET default_transaction_read_only = on")
        return conn
    except psycopg.OperationalError as e:
        raise StoreUnavailable(f"cannot reach the run store's database {redact(url)} ({_first_line(e)}); check "
                               f"that the server runs and that {DB_ENV} names it (user, host, port, database)") from None


def _first_line(error: BaseException) -> str:
    """What the driver said, on one line (psycopg's message names host and port, never a password)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[0].rstrip(".") if lines else type(error).__name__


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the server or the network went away (worth a retry), not a bad statement."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) and not isinstance(
        error, psycopg.errors.QueryCanceled)


def with_retry(fn: Callable[[], Any], url: str, reconnect: Callable[[], None], what: str,
               seconds: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Any:
    """``fn()``, tried again on a lost connection with backoff (0.2 s doubling to 5 s) until ``seconds``
    (default :func:`retry_seconds`) have passed; then :class:`StoreUnavailable` naming the database
    and ``what`` was being done. A statement's own error (a constraint, a typo) is raised at once."""
    budget = retry_seconds() if seconds is None else seconds
    deadline, pause = time.monotonic() + budget, 0.2
    while True:
        try:
            return fn()
        except StoreUnavailable as e:
            last: BaseException = e
        except Exception as e:
            if not is_connection_error(e):
                raise
            last = e
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailable(f"lost the run store's database {redact(url)} while trying to {what}, and it "
                                   f"did not come back within {budget:.0f} s ({RETRY_ENV}): {_first_line(last)}") from None
        sleep(min(pause, left))
        pause = min(pause * 2, 5.0)
        try:
            reconnect()
        except Exception:  # the next try says whether it is back
            pass


# -- the schema ------------------------------------------------------------------------------------
SCHEMA_LOCK = 7302021  # the advisory lock two processes migrating one fresh database take in turn


def schema_version(conn: Connection) -> int:
    """The database's schema version: 0 where MTL Studio has not written to it."""
    if conn.execute("SELECT to_regclass('mtl_schema')").fetchone()[0] is None:
        return 0
    row = conn.execute("SELECT version FROM mtl_schema").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Connection, tx: Callable[[], Any], check: Callable[[int], int], scripts: Sequence[str]) -> None:
    """Bring the database to ``len(scripts)``, each migration in its own transaction under an
    advisory lock, so two processes opening a fresh database at once migrate it once."""
    if check(schema_version(conn)) == len(scripts):
        return
    while True:
        with tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
            c.execute("CREATE TABLE IF NOT EXISTS mtl_schema (version INTEGER NOT NULL)")
            version = check(schema_version(c))
            if version == len(scripts):
                return
            for statement in statements(scripts[version]):
                c.execute(ddl_to_postgres(statement))
            for statement in EXTRA_DDL.get(version + 1, ()):
                c.execute(statement)
            c.execute("DELETE FROM mtl_schema")
            c.execute("INSERT INTO mtl_schema (version) VALUES (?)", (version + 1,))


def optuna_storage_url(conn: Connection, url: str) -> str:
    """Where an Optuna search keeps its trials beside this store: the same database, in a schema of
    its own (``<the store's schema>_optuna``; Optuna has a table ``studies`` too), as SQLAlchemy's
    psycopg URL for Optuna's RDB storage."""
    from urllib.parse import parse_qsl, urlencode

    from psycopg import sql

    schema = conn.execute("SELECT current_schema()").fetchone()[0] + "_optuna"
    conn.raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    options = [o for o in dict(parse_qsl(parts.query)).get("options", "").split() if "search_path" not in o]
    query.append(("options", " ".join([*options, f"-csearch_path={schema}"])))
    return urlunsplit(parts._replace(scheme="postgresql+psycopg", query=urlencode(query)))
