"""The run store on a PostgreSQL server that is not there, or goes away mid-run: a clear error that
names the database without its password, writes that wait for it a while, and a run that is never
lost (its checkpoint kept, resumable once the server is back)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mtl_core.errors import StoreUnavailable
from mtl_core.store.postgres import redact, with_retry
from mtl_core.store.store import RunStore
from mtl_core.training.checkpoint import load_checkpoint
from tests.servers import PostgresServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_password_never_shows():
    assert redact("postgresql://ann:s3cret@db.lab:5432/runs") == "postgresql://ann:***@db.lab:5432/runs"
    assert redact("postgresql://ann@db.lab/runs") == "postgresql://ann@db.lab/runs"


def test_an_unreachable_database_at_start_names_it_without_its_password(tmp_path, monkeypatch, capsys):
    url = f"postgresql://ann:s3cret@127.0.0.1:{free_port()}/runs"
    with pytest.raises(StoreUnavailable) as e:
        RunStore(tmp_path, url=url)
    assert f"postgresql://ann:***@127.0.0.1:{url.split(':')[3]}" in str(e.value) and "s3cret" not in str(e.value)
    assert "MTL_RUNS_DB" in str(e.value)
    from mtl_core.cli import main

    monkeypatch.setenv("MTL_RUNS_DB", url)
    assert main(["list", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the run store's database postgresql://ann:***@" in err and "s3cret" not in err


def test_not_a_postgresql_url_says_what_is_accepted(tmp_path):
    with pytest.raises(Exception, match="not a PostgreSQL URL.*postgresql://user"):
        RunStore(tmp_path, url="mysql://root@localhost/runs")


def test_a_retry_gives_up_after_its_window_naming_what_it_was_doing():
    import psycopg

    calls = []

    def lost():
        calls.append(time.monotonic())
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(StoreUnavailable, match=r"while trying to log metrics.*within 1 s"):
        with_retry(lost, "postgresql://a:b@h/d", lambda: None, "log metrics", seconds=1.0)
    assert len(calls) >= 3 and calls[-1] - calls[0] <= 1.5  # backed off, and gave up on time

    def bad_statement():
        raise psycopg.errors.UndefinedTable("no such table")

    with pytest.raises(psycopg.errors.UndefinedTable):  # a statement's own error is not waited out
        with_retry(bad_statement, "postgresql://h/d", lambda: None, "read", seconds=30.0)


@pytest.fixture
def own_server():
    """A server of this test's own, to stop and start (the session's serves the other tests)."""
    server = PostgresServer()
    yield server
    server.close()


@pytest.mark.slow
def test_a_store_call_waits_for_a_server_that_comes_back(own_server, tmp_path):
    store = RunStore(tmp_path, url=own_server.url())
    rid = store.create_run({}, "r", status="running")
    own_server.stop("immediate")
    threading.Timer(1.5, own_server.start).start()
    t0 = time.monotonic()
    store.update_progress(rid, 7)  # waits out the restart, then writes
    assert 1.0 < time.monotonic() - t0 < 20
    assert store.get_run(rid)["step"] == 7


TRAIN = ["train", "--tasks", "classification,segmentation", "--steps", "100000", "--batch-size", "8",
         "--image-size", "32", "--train-size", "64", "--checkpoint-every", "3", "--eval-every", "100000",
         "--device", "cpu", "--quiet"]


@pytest.mark.slow
def test_a_run_whose_database_goes_away_stops_keeping_its_checkpoint_and_resumes_when_it_is_back(own_server,
                                                                                                 tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "MTL_RUNS_DB": own_server.url(), "MTL_RUNS_DB_RETRY_S": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", *TRAIN, "--runs-dir", str(runs)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        store = RunStore(runs, url=own_server.url())
        deadline = time.time() + 90
        while time.time() < deadline:
            listed = store.list_runs()
            if listed and store.latest_checkpoint(listed[0]["id"]) and listed[0]["step"] >= 4:
                break
            time.sleep(0.1)
        (run,) = store.list_runs()
        store.close()
        own_server.stop("immediate")
        out, err = proc.communicate(timeout=60)  # it gives up: it does not train on, unrecorded, forever
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 or "failed" in out + err
    assert f"lost the run store's database {own_server.url()}" in err and "did not come back within 2 s" in err
    last = runs / run["id"] / "last.pt"  # the checkpoint is a file: it is there with the server down
    saved = load_checkpoint(str(last))["step"]
    assert saved >= 3
    own_server.start()
    store = RunStore(runs, url=own_server.url())
    assert store.get_run(run["id"])["status"] == "running"  # as last written: nobody was there to say otherwise
    assert store.mark_interrupted(stale_after=0.5) == [run["id"]]
    assert "resume it from its last checkpoint" in store.get_run(run["id"])["error"]
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "resume", run["id"], "--runs-dir", str(runs),
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while store.get_run(run["id"])["step"] <= saved + 2 and time.time() < deadline:
            time.sleep(0.1)
        assert store.events(run["id"], "resumed_from_checkpoint")[-1]["step"] == saved
        store.send_command(run["id"], "stop")
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert store.get_run(run["id"])["status"] == "stopped" and store.get_run(run["id"])["step"] > saved
