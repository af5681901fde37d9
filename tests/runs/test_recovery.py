"""kill -9 during training: the store stays sound, checkpoints are never torn, the run resumes."""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_core.runs.manager import RunManager
from mtl_core.store.store import RunStore
from mtl_core.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STALE_AFTER = 2.0  # seconds without a heartbeat before the dashboard calls a run interrupted (30 by default)
TRAIN = ["--tasks", "classification,segmentation", "--steps", "100000", "--batch-size", "8", "--image-size", "32",
         "--train-size", "64", "--checkpoint-every", "5", "--eval-every", "50", "--device", "cpu", "--quiet"]


def _spawn(args, runs):
    return subprocess.Popen([sys.executable, "-m", "mtl_core", *args, "--runs-dir", str(runs)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(store, run_id, step, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = store.get_run(run_id) if run_id else None
        if run and run["step"] >= step:
            return run["step"]
        time.sleep(0.05)
    raise AssertionError(f"run did not reach step {step}")


@pytest.mark.slow
@pytest.mark.usefixtures("store_backend")
def test_kill_9_at_random_moments_then_resume(tmp_path):
    runs = tmp_path / "runs"
    rng = random.Random(0)
    proc = _spawn(["train", *TRAIN], runs)
    store = None
    run_id = None
    deadline = time.time() + 60
    while run_id is None and time.time() < deadline:
        if (runs / "runs.sqlite").exists() or os.environ.get("MTL_RUNS_DB"):
            store = RunStore(runs)
            listed = store.list_runs()
            run_id = listed[0]["id"] if listed else None
        time.sleep(0.05)
    assert run_id, "the training process never created its run"
    last_step = 0
    for kill in range(3):
        if kill:
            proc = _spawn(["resume", run_id, "--quiet"], runs)
        _wait_for_step(store, run_id, last_step + 6)
        time.sleep(rng.uniform(0.0, 0.6))  # a random moment: mid-step, mid-write or mid-checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        if store.backend == "sqlite":
            conn = sqlite3.connect(runs / "runs.sqlite")
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
        ck = store.latest_checkpoint(run_id)
        assert ck is not None
        payload = load_checkpoint(ck["path"])  # never torn
        assert payload["step"] % 5 == 0
        # the file is renamed into place before its row moves to the new step: a kill between the two
        # leaves the file one checkpoint ahead of the store's row, never behind it
        assert payload["step"] in (ck["step"], ck["step"] + 5)
        last_step = payload["step"]
        # a dashboard starting once the dead trainer's heartbeat has gone stale sees the run as
        # interrupted, and names the last checkpoint the store records
        time.sleep(STALE_AFTER + 0.5)
        m = RunManager(runs, recover=True, stale_after=STALE_AFTER)
        run = m.store.get_run(run_id)
        assert run["status"] == "interrupted" and f"checkpoint (step {ck['step']})" in run["error"]
        m.shutdown()
    # resume from the dashboard's RunManager and let it finish quickly: the same steps continue
    m = RunManager(runs, recover=True, stale_after=STALE_AFTER)
    m.resume_run(run_id)
    deadline = time.time() + 60
    # the killed process may have logged rows past its checkpoint until the resumed run truncates
    # them on loading it: wait for that load (its event), then for rows the resumed run wrote
    def resumed_rows() -> bool:
        if sum(e["kind"] == "resumed_from_checkpoint" for e in m.store.events(run_id)) < 3:
            return False
        return bool(m.store.metrics(run_id, "train", "loss/classification", since_step=last_step + 2))

    while not resumed_rows() and time.time() < deadline:
        time.sleep(0.05)
    m.stop(run_id)
    assert m.wait(run_id, 60) == "stopped"
    assert not list(m.store.run_dir(run_id).glob(".*.tmp")), "temporary files of killed writes are cleaned up"
    steps = [r[0] for r in m.store.metrics(run_id, "train", "loss/classification")]
    assert steps == sorted(set(steps)), "a resumed run redoes no step twice in its curves"
    assert steps[0] == 1 and steps[-1] > last_step and steps == list(range(1, steps[-1] + 1))
    events = [e["kind"] for e in m.store.events(run_id)]
    assert events.count("resumed_from_checkpoint") >= 3
