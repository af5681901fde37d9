import sqlite3
import threading
import time

import pytest

from mtl_core.errors import ConfigError
from mtl_core.store.ids import check_run_id
from mtl_core.store.store import RunStore

pytestmark = pytest.mark.usefixtures("store_backend")  # every test on SQLite and on PostgreSQL


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


def test_a_reader_sees_writes_while_a_writer_writes(tmp_path):
    """A reader sees what a writer has committed so far, and is not held up by a write in progress
    (SQLite in WAL mode; PostgreSQL's snapshots). Each step waits for the other on an event, so the
    outcome never depends on scheduling."""
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r")
    if store.backend == "sqlite":
        assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    half_done, go_on = threading.Event(), threading.Event()

    def writer():
        w = RunStore(tmp_path)
        for step in range(200):
            if step == 100:
                half_done.set()
                go_on.wait(30)
            w.log_metrics(rid, [(step, "train", "loss/a", 1.0 / (step + 1), time.time())])

    t = threading.Thread(target=writer)
    t.start()
    assert half_done.wait(30)
    reader = RunStore(tmp_path)
    assert len(reader.metrics(rid)) == 100  # the first half, while the writer is mid-run
    # a write transaction left open by another connection: WAL lets the reader read past it at once
    held = store._connect()
    held.execute("BEGIN IMMEDIATE")
    held.execute("DELETE FROM metrics")
    # the uncommitted delete is invisible; a reader that had to wait for it would raise "database is
    # locked" once its busy timeout ran out, since the transaction is released only below
    assert len(reader.metrics(rid)) == 100
    held.execute("ROLLBACK")
    held.close()
    go_on.set()
    t.join(30)
    assert len(reader.metrics(rid)) == 200


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
    rid = store.create_run({}, "100% ? %s $1 \\ ; \u00e9t\u00e9")  # placeholders of every dialect, as data
    assert store.get_run(rid)["name"] == "100% ? %s $1 \\ ; \u00e9t\u00e9"


def _backdate(store, seconds, run_id=None, owner=None):
    """Pretend a run (its heartbeat and last write) or an owner was last heard from ``seconds`` ago."""
    with store.transaction() as conn:
        if run_id:
            conn.execute("UPDATE runs SET heartbeat=heartbeat-?, updated=updated-? WHERE id=?",
                         (seconds, seconds, run_id))
        if owner:
            conn.execute("UPDATE owners SET heartbeat=heartbeat-? WHERE id=?", (seconds, owner))


def test_a_running_run_whose_heartbeat_stopped_becomes_interrupted_with_its_last_step(tmp_path):
    store = RunStore(tmp_path)
    dead = store.create_run({}, "dead", status="running")
    store.update_progress(dead, 42)
    store.heartbeat(dead, host="gpu-node-3", pid=31337)
    store.add_checkpoint(dead, 40, str(tmp_path / "last.pt"))
    _backdate(store, 95, run_id=dead)
    alive = store.create_run({}, "alive", status="running")
    store.update_progress(alive, 7)
    store.heartbeat(alive, host="gpu-node-3", pid=31338)
    paused = store.create_run({}, "paused", status="paused")
    store.heartbeat(paused)
    assert store.mark_interrupted() == [dead]
    run = store.get_run(dead)
    assert run["status"] == "interrupted" and run["finished"] is not None
    message = run["error"]
    assert "step 42" in message and "gpu-node-3" in message and "pid 31337" in message
    assert "heartbeat" in message and "95 s" in message
    assert "resume it from its last checkpoint (step 40)" in message
    assert store.get_run(alive)["status"] == "running" and store.get_run(paused)["status"] == "paused"
    assert store.run_alive(alive) and not store.run_alive(dead)


def test_a_run_from_before_heartbeats_is_judged_by_its_last_write(tmp_path):
    store = RunStore(tmp_path)
    old = store.create_run({}, "old", status="running")
    store.update_progress(old, 5, {"pid": 4242})  # the pid in info, as runs before heartbeats have it
    _backdate(store, 3600, run_id=old)
    recent = store.create_run({}, "recent", status="running")
    assert store.mark_interrupted() == [old]
    message = store.get_run(old)["error"]
    assert "step 5" in message and "pid 4242" in message and "no checkpoint" in message
    assert store.get_run(recent)["status"] == "running"


def test_queued_runs_of_a_live_dashboard_are_left_alone_those_of_a_dead_one_are_interrupted(tmp_path):
    store = RunStore(tmp_path)
    store.register_owner("dash-live", "laptop", 100)
    store.register_owner("dash-stale", "laptop", 200)
    _backdate(store, 120, owner="dash-stale")
    live = store.create_run({}, "live", owner="dash-live")
    _backdate(store, 3600, run_id=live)  # queued for an hour behind other runs: still wanted
    stale = store.create_run({}, "stale", owner="dash-stale")
    gone = store.create_run({}, "gone")
    store.set_owner(gone, "dash-gone")  # never registered, or removed
    assert sorted(store.mark_interrupted()) == sorted([stale, gone])
    assert store.get_run(live)["status"] == "queued"
    assert "dash-stale" in store.get_run(stale)["error"] and "laptop" in store.get_run(stale)["error"]
    assert "dash-gone" in store.get_run(gone)["error"]
    store.owner_heartbeat("dash-stale")  # refreshing keeps an owner's later runs
    assert store.run_alive(store.create_run({}, "again", owner="dash-stale"))
    store.remove_owner("dash-live")
    assert store.mark_interrupted() == [live]
    assert {o["id"] for o in store.owners()} == {"dash-stale"}


def test_an_owner_taking_over_does_not_keep_its_predecessors_queue(tmp_path):
    store = RunStore(tmp_path)
    store.register_owner("dash", "laptop", 1)
    queued = store.create_run({}, "q", owner="dash")
    assert store.mark_interrupted() == []
    assert store.mark_interrupted(owner="dash") == [queued]


def test_commands_round_trip_in_the_order_sent(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r", status="running")
    ids = [store.send_command(rid, "pause"), store.send_command(rid, "weights", {"depth": 2.0}),
           store.send_command(rid, "resume")]
    pending = store.pending_commands(rid)
    assert [c["id"] for c in pending] == ids and ids == sorted(ids)
    assert [c["kind"] for c in pending] == ["pause", "weights", "resume"]
    assert pending[1]["payload"] == {"depth": 2.0} and pending[0]["payload"] is None
    store.mark_command(ids[0], "applied", step=12)
    store.mark_command(ids[1], "rejected", step=12, message="weights must be >= 0")
    assert [c["id"] for c in store.pending_commands(rid)] == [ids[2]]
    done = {c["id"]: c for c in store.commands(rid)}
    assert (done[ids[0]]["state"], done[ids[0]]["step"]) == ("applied", 12)
    assert (done[ids[1]]["state"], done[ids[1]]["message"]) == ("rejected", "weights must be >= 0")
    assert done[ids[2]]["state"] == "pending"
    other = store.create_run({}, "other", status="running")
    assert store.pending_commands(other) == []
    with pytest.raises(ConfigError) as err:
        store.mark_command(ids[2], "done")
    assert err.value.field == "state"
    store.delete_run(rid)
    assert store.commands(rid) == []


def test_a_command_to_a_run_that_has_ended_says_so(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r", status="running")
    store.update_progress(rid, 10)
    store.set_status(rid, "finished")
    with pytest.raises(ConfigError) as err:
        store.send_command(rid, "pause")
    assert err.value.field == "run_id"
    assert rid in str(err.value) and "has ended" in str(err.value) and "finished at step 10" in str(err.value)
    assert "nothing to pause" in str(err.value)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        store.send_command("nope", "stop")
    live = store.create_run({}, "live")
    with pytest.raises(ConfigError) as err:
        store.send_command(live, "explode")
    assert err.value.field == "kind" and "pause" in str(err.value)
    assert store.commands(rid) == [] and store.commands(live) == []


def test_one_checkpoint_row_per_file_after_several_periodic_saves(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "r", status="running")
    last, final = store.run_dir(rid) / "last.pt", store.run_dir(rid) / "final.pt"
    last.write_bytes(b"x")
    for step in (5, 10, 15, 20):
        store.add_checkpoint(rid, step, str(last), "periodic")
    assert [(c["step"], c["kind"]) for c in store.checkpoints(rid)] == [(20, "periodic")]
    assert store.latest_checkpoint(rid)["step"] == 20
    final.write_bytes(b"y")
    store.add_checkpoint(rid, 24, str(final), "final")
    assert len(store.checkpoints(rid)) == 2
    assert store.latest_checkpoint(rid)["path"] == str(final)
    assert store.latest_checkpoint(rid, "periodic")["path"] == str(last)
    final.unlink()  # a file that is gone is never offered
    assert store.latest_checkpoint(rid)["path"] == str(last)


def test_the_cli_resumes_only_a_run_nobody_trains_any_more(tmp_path, capsys):
    from mtl_core.cli import main

    store = RunStore(tmp_path)
    rid = store.create_run({}, "r", status="running")
    store.heartbeat(rid, host="gpu-node-3", pid=31337)
    assert main(["resume", rid, "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "still running on host gpu-node-3" in err and "stop it first" in err
    _backdate(store, 95, run_id=rid)  # its process died a while ago: resuming is allowed, from a checkpoint
    assert main(["resume", rid, "--runs-dir", str(tmp_path)]) == 2
    assert "has no checkpoint" in capsys.readouterr().err
