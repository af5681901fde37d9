"""The run store's schema version: a runs directory written before versioning is migrated in place
with every row kept; one written by a newer MTL Studio is refused untouched."""
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from mtl_core.errors import MTLError
from mtl_core.store import database as store_module  # where the store opens and migrates
from mtl_core.store.schema import SCHEMA_VERSION
from mtl_core.store.store import RunStore

# The schema as MTL Studio wrote it before the store was versioned (user_version 0), verbatim.
OLD_SCHEMA = """
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


def old_runs_dir(root):
    """A runs directory as the code before versioning left it: two runs, their metrics, events and
    checkpoints, with one row per periodic save of last.pt (as that code added them)."""
    root.mkdir()
    conn = sqlite3.connect(root / "runs.sqlite")
    conn.executescript(OLD_SCHEMA)
    conn.execute("PRAGMA journal_mode=WAL")
    t = 1_700_000_000.0
    conn.execute("INSERT INTO runs (id, name, status, config, created, updated, started, finished, step, total_steps,"
                 " error, source, device, info) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 ("old-finished", "finished run", "finished", json.dumps({"tasks": ["depth"]}), t, t + 60, t + 1,
                  t + 60, 30, 30, None, "cli", "cpu", json.dumps({"pid": 4242, "images_per_s": 90.0})))
    conn.execute("INSERT INTO runs (id, name, status, config, created, updated, step, total_steps, source)"
                 " VALUES (?,?,?,?,?,?,?,?,?)", ("old-running", "left running", "running", "{}", t, t + 10, 12, 100,
                                                 "dashboard"))
    metrics = [(rid, s, "train", "loss/depth", 1.0 / s, t + s) for rid in ("old-finished", "old-running")
               for s in range(1, 31 if rid == "old-finished" else 13)]
    metrics += [("old-finished", 30, "test", "depth/abs_rel", 0.25, t + 60)]
    conn.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", metrics)
    conn.executemany("INSERT INTO events VALUES (?,?,?,?,?)",
                     [("old-finished", 10, t + 10, "weights", json.dumps({"new": {"depth": 2.0}})),
                      ("old-finished", 20, t + 20, "paused", "{}")])
    last, final = root / "old-finished" / "last.pt", root / "old-finished" / "final.pt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    final.write_bytes(b"y")
    conn.executemany("INSERT INTO checkpoints VALUES (?,?,?,?,?)",
                     [("old-finished", s, str(last), "periodic", t + s) for s in (10, 20, 30)]
                     + [("old-finished", 30, str(final), "final", t + 61)])
    conn.commit()
    conn.close()
    return metrics


def test_a_runs_directory_from_before_versioning_keeps_every_row(tmp_path):
    root = tmp_path / "runs"
    metrics = old_runs_dir(root)
    store = RunStore(root)
    assert store.schema_version() == SCHEMA_VERSION
    assert {r["id"] for r in store.list_runs()} == {"old-finished", "old-running"}
    run = store.get_run("old-finished")
    assert (run["name"], run["status"], run["step"], run["source"], run["device"]) == ("finished run", "finished",
                                                                                       30, "cli", "cpu")
    assert run["config"] == {"tasks": ["depth"]} and run["info"]["pid"] == 4242
    # the new columns exist, empty (history starts at 0)
    assert (run["host"], run["pid"], run["heartbeat"], run["owner"], run["history"]) == (None, None, None, None, 0)
    got = store.metrics("old-finished") + store.metrics("old-running")
    assert sorted(got) == sorted(m[1:] for m in metrics)
    assert store.metrics_after("old-finished")[0] == [m[1:] for m in metrics if m[0] == "old-finished"]
    assert [e["kind"] for e in store.events("old-finished")] == ["weights", "paused"]
    assert store.events("old-finished", "weights")[0]["payload"] == {"new": {"depth": 2.0}}
    # the three rows of last.pt (one per periodic save) became one: the newest, at step 30
    cks = store.checkpoints("old-finished")
    assert sorted((Path(c["path"]).name, c["step"], c["kind"]) for c in cks) == [("final.pt", 30, "final"),
                                                                                ("last.pt", 30, "periodic")]
    assert Path(store.latest_checkpoint("old-finished")["path"]).name == "final.pt"
    # and what is new works on the old runs
    store.heartbeat("old-running", host="node1", pid=77)
    assert store.get_run("old-running")["host"] == "node1"
    cid = store.send_command("old-running", "pause")
    assert [c["id"] for c in store.pending_commands("old-running")] == [cid]
    store.truncate_metrics("old-running", 6)
    assert store.metrics_history("old-running") == 1 and len(store.metrics("old-running")) == 6
    # opening it again changes nothing
    assert RunStore(root).schema_version() == SCHEMA_VERSION and len(RunStore(root).list_runs()) == 2


def test_a_fresh_directory_gets_the_current_schema(tmp_path):
    store = RunStore(tmp_path)
    assert store.schema_version() == SCHEMA_VERSION
    tables = {r[0] for r in sqlite3.connect(store.path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "metrics", "events", "checkpoints", "owners", "commands"} <= tables


def test_a_directory_from_a_newer_mtl_studio_is_refused_and_left_untouched(tmp_path):
    root = tmp_path / "runs"
    old_runs_dir(root)
    conn = sqlite3.connect(root / "runs.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = (root / "runs.sqlite").read_bytes()
    with pytest.raises(MTLError) as err:
        RunStore(root)
    message = str(err.value)
    assert "newer MTL Studio" in message and "upgrade" in message and str(root) in message
    assert (root / "runs.sqlite").read_bytes() == before
    assert sqlite3.connect(root / "runs.sqlite").execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def _open_at_once(root, n: int = 6) -> list[Exception]:
    barrier, errors = threading.Barrier(n), []

    def open_it():
        barrier.wait()
        try:
            RunStore(root).create_run({}, "r")
        except Exception as e:  # noqa: BLE001 - collected and asserted by the caller
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_processes_opening_a_fresh_directory_at_once_migrate_it_once(tmp_path):
    for attempt in range(5):  # each store has its own connection: as separate processes do
        root = tmp_path / f"runs{attempt}"
        assert _open_at_once(root) == []
        store = RunStore(root)
        assert store.schema_version() == SCHEMA_VERSION and len(store.list_runs()) == 6


def test_a_migration_that_fails_leaves_the_directory_as_it_was(tmp_path, monkeypatch):
    RunStore(tmp_path).create_run({}, "kept")

    def broken(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN half_done TEXT")
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError):
        RunStore(tmp_path)
    conn = sqlite3.connect(tmp_path / "runs.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "half_done" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert conn.execute("SELECT name FROM runs").fetchall() == [("kept",)]
