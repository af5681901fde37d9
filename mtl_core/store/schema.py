"""The run store's schema, versioned with SQLite's ``PRAGMA user_version`` (on PostgreSQL, the table
``mtl_schema``): ``MIGRATIONS[i]`` takes a store from version ``i`` to ``i + 1`` inside one
transaction, so a store written by any earlier MTL Studio opens with every row kept (see
``RunStore._migrate``)."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable

# Version 1: the schema before versioning, verbatim (such a directory has user_version 0).
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, started REAL, finished REAL,
    step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0,
    error TEXT, traceback TEXT, source TEXT, device TEXT, info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, split TEXT NOT NULL, key TEXT NOT NULL,
    value REAL, wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, split, key, step);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, wall REAL NOT NULL, kind TEXT NOT NULL, payload TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, step);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, wall REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_by_run ON checkpoints (run_id, step);
"""

# Version 2: liveness by heartbeat, commands to trainers, one checkpoint row per file, and the
# indexes that make incremental reads cost the same however long the run.
SCHEMA_2 = """
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat REAL;
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN history INTEGER NOT NULL DEFAULT 0;
CREATE TABLE owners (id TEXT PRIMARY KEY, host TEXT, pid INTEGER, heartbeat REAL);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT,
    created REAL NOT NULL, state TEXT NOT NULL DEFAULT 'pending', step INTEGER, message TEXT
);
CREATE INDEX commands_by_run ON commands (run_id, state, id);
DELETE FROM checkpoints WHERE rowid NOT IN (SELECT MAX(rowid) FROM checkpoints GROUP BY run_id, path);
CREATE UNIQUE INDEX checkpoints_by_file ON checkpoints (run_id, path);
CREATE INDEX metrics_by_rowid ON metrics (run_id);
CREATE INDEX metrics_by_step ON metrics (run_id, step);
"""
# metrics_by_rowid: every index entry ends in the rowid, so (run_id) alone serves "rows of this
# run after rowid N, in rowid order" as a range scan; metrics_by_step serves ORDER BY step.


# Version 3: studies (many runs read as one experiment). A study's plan is its rows in
# study_runs, one per planned run (its config's key), each served by a run once one is started
# or reused (a baseline an earlier study trained on the same data, model and seed); runs carry
# their config's key, so such a run is found by it, and tags saying what they are in a study.
SCHEMA_3 = """
ALTER TABLE runs ADD COLUMN plan_key TEXT;
ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
CREATE INDEX runs_by_plan_key ON runs (plan_key);
CREATE TABLE studies (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'active'
);
CREATE TABLE study_runs (
    study TEXT NOT NULL, key TEXT NOT NULL, role TEXT NOT NULL, level TEXT NOT NULL, seed INTEGER NOT NULL,
    task TEXT NOT NULL DEFAULT '', run_id TEXT, position INTEGER NOT NULL, PRIMARY KEY (study, key)
);
CREATE INDEX study_runs_by_run ON study_runs (run_id);
"""


# Version 4: runs a person can find among thousands (a note and their own tags, a list read newest
# first or by status without a sort of every row), and a study's count of how many times each
# planned run was started (a run lost with its node is started again, at most a set number of times).
SCHEMA_4 = """
ALTER TABLE runs ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
CREATE INDEX runs_by_created ON runs (created);
CREATE INDEX runs_by_status ON runs (status, created);
ALTER TABLE study_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
"""


def statements(sql: str) -> list[str]:
    """A migration script's statements, one by one (executescript would commit the transaction)."""
    return [s.strip() for s in sql.split(";") if s.strip()]


def _script(sql: str) -> Callable[[sqlite3.Connection], None]:
    def apply(conn: sqlite3.Connection) -> None:
        for statement in statements(sql):
            conn.execute(statement)

    return apply


# SCRIPTS[i] takes a store from version i to i + 1, inside one transaction: the same scripts on
# SQLite (MIGRATIONS) and, translated, on PostgreSQL (mtl_core.store.postgres.ddl_to_postgres).
SCRIPTS: tuple[str, ...] = (SCHEMA, SCHEMA_2, SCHEMA_3, SCHEMA_4)
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_script(sql) for sql in SCRIPTS]
SCHEMA_VERSION = len(MIGRATIONS)
