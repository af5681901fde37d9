"""Real servers the tests start themselves: a PostgreSQL cluster from Debian's ``postgresql``
package (``initdb`` and ``pg_ctl`` in a temporary folder, on a free loopback port, removed
afterwards). Where the package is missing the tests that need it are skipped, unless
``MTL_TEST_SERVERS=required`` (``.ci/run`` sets it): then they fail, saying what to install."""
from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRED_ENV = "MTL_TEST_SERVERS"


def missing(what: str) -> None:
    """Skip (or, where servers are required, fail) a test whose server cannot start."""
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{what} ({REQUIRED_ENV}=required)")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; ``url(schema)`` names a database session
    whose tables live in ``schema`` (a fresh one per test is cheaper than a database)."""

    def __init__(self) -> None:
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        if not (initdb and pg_ctl):
            missing("PostgreSQL's initdb and pg_ctl are not installed: apt-get install -y postgresql")
        self.pg_ctl = pg_ctl
        self.dir = Path(tempfile.mkdtemp(prefix="mtl-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        # initdb refuses to run as root: as root, the cluster belongs to Debian's postgres user
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres")
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "mtl", "-E", "UTF8", "--locale=C.UTF-8"])
        self.start()

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(self.as_user + cmd, capture_output=True, text=True, cwd=self.dir, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=300")
        self._run([self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    def url(self, schema: str | None = None) -> str:
        base = f"postgresql://mtl@127.0.0.1:{self.port}/postgres"
        return base + (f"?options=-csearch_path%3D{schema}" if schema else "")

    def new_schema(self) -> str:
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")  # a name made here, never user text
        return name

    def drop_schema(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def close(self) -> None:
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
