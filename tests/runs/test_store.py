import sqlite3
import threading
import time

import pytest

from mtl_core.errors import ConfigError
from mtl_core.runs.store import RunStore, check_run_id


def test_run_life_cycle_and_metrics(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({"a": 1}, name="first", source="cli", total_steps=10)
    assert store.get_run(rid)["status"] == "queued"
    store.set_status(rid, "running")
    store.log_metrics(rid, [(1, "train", "loss/x", 0.5, time.time()), (2, "train", "loss/x", float("nan"), time.time())])
    rows = store.metrics(rid, "train")
    assert [r[0] for r in rows] == [1, 2]
    assert rows[1][3] is None  # NaN is stored as a missing value, never poisons SQL aggregates
    store.set_status(rid, "failed", error="boom")
    run = store.get_run(rid)
    assert run["status"] == "failed" and run["error"] == "boom" and run["finished"] is not None


def test_wal_mode_and_reader_sees_writes_while_writer_writes(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r")
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    seen = []
    stop = threading.Event()

    def writer():
        w = RunStore(tmp_path)
        for step in range(200):
            w.log_metrics(rid, [(step, "train", "loss/a", 1.0 / (step + 1), time.time())])
        stop.set()

    t = threading.Thread(target=writer)
    t.start()
    reader = RunStore(tmp_path)
    while not stop.is_set():
        seen.append(len(reader.metrics(rid)))
    t.join()
    seen.append(len(reader.metrics(rid)))
    assert seen[-1] == 200
    assert any(0 < n < 200 for n in seen) or seen[0] == 200  # partial progress was visible while writing


def test_delete_removes_only_that_run(tmp_path):
    store = RunStore(tmp_path)
    a, b = store.create_run({}, "a"), store.create_run({}, "b")
    (store.run_dir(a) / "last.pt").write_bytes(b"x")
    (store.run_dir(b) / "last.pt").write_bytes(b"y")
    store.log_metrics(a, [(1, "train", "k", 1.0, 0.0)])
    store.log_metrics(b, [(1, "train", "k", 2.0, 0.0)])
    store.delete_run(a)
    assert store.get_run(a) is None and not store.run_dir(a).exists()
    assert store.get_run(b) is not None and (store.run_dir(b) / "last.pt").read_bytes() == b"y"
    assert store.metrics(b)[0][3] == 2.0


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "x" * 65, "..", "a b", "run;DROP TABLE runs"])
def test_run_ids_cannot_escape_the_runs_directory(tmp_path, bad):
    with pytest.raises(ConfigError):
        check_run_id(bad)
    with pytest.raises(ConfigError):
        RunStore(tmp_path).run_dir(bad)


def test_hostile_names_are_stored_as_data(tmp_path):
    store = RunStore(tmp_path)
    name = "x'); DROP TABLE runs; --"
    rid = store.create_run({}, name)
    assert store.get_run(rid)["name"] == name
    assert len(store.list_runs()) == 1


def test_runs_left_running_by_a_dead_process_become_interrupted(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r")
    store.set_status(rid, "running")
    store.update_progress(rid, 5, {"pid": 2**22 + 12345})  # no such process
    alive = store.create_run({}, "alive")
    store.set_status(alive, "running")
    import os

    store.update_progress(alive, 5, {"pid": os.getpid()})
    assert store.mark_interrupted(only_pids_dead=True) == [rid]
    assert store.get_run(rid)["status"] == "interrupted"
    assert store.get_run(alive)["status"] == "running"
