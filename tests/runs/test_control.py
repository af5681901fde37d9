"""One control path for every run: a run trained by ``python -m mtl_core train`` in another
process is paused, retuned, resumed and stopped from a RunManager here, through the run store,
exactly as a dashboard run; bad retunes and commands to an ended run get a clear message."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_core.errors import ConfigError
from mtl_core.runs.manager import RunManager
from mtl_core.store.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--tasks", "classification,segmentation", "--steps", "100000", "--batch-size", "8", "--image-size", "32",
         "--train-size", "256", "--eval-every", "100000", "--checkpoint-every", "0", "--quiet"]


def _until(predicate, seconds: float = 60, what: str = "") -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _listed(runs: Path) -> list:
    """The runs in the store the CLI writes to, once it has made one (SQLite: its file; PostgreSQL: $MTL_RUNS_DB)."""
    if not os.environ.get("MTL_RUNS_DB") and not (runs / "runs.sqlite").exists():
        return []
    return RunStore(runs).list_runs()


@pytest.fixture
def cli_run(tmp_path, store_backend):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "mtl_core", "train", "--runs-dir", str(runs), *TRAIN], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: _listed(runs), what="the CLI's run")
        store = RunStore(runs)
        run_id = store.list_runs()[0]["id"]
        _until(lambda: store.get_run(run_id)["step"] >= 3, what="three steps")
        yield {"runs": runs, "run_id": run_id, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.mark.slow
def test_a_cli_run_is_paused_retuned_resumed_and_stopped_from_a_manager(cli_run):
    m = RunManager(cli_run["runs"], max_concurrent=1)
    store, rid = m.store, cli_run["run_id"]
    assert m.is_active(rid)  # trained elsewhere, yet steerable from here
    m.pause(rid)
    _until(lambda: store.get_run(rid)["status"] == "paused", what="the pause")
    paused_at = store.get_run(rid)["step"]
    time.sleep(1.0)
    assert store.get_run(rid)["step"] == paused_at  # the step stops moving
    # a retune while paused, merged with the weights in force and checked by Setup's rules
    assert m.set_weights(rid, {"segmentation": 0.25}) == {"classification": 1.0, "segmentation": 0.25}
    with pytest.raises(ConfigError, match=r"weighting\.weights\.depth.*not a selected task"):
        m.set_weights(rid, {"depth": 1.0})
    with pytest.raises(ConfigError, match=r"weighting\.weights\.segmentation.*\[0, 10\]"):
        m.set_weights(rid, {"segmentation": 50.0})
    _until(lambda: store.events(rid, "weights"), what="the weight change")
    assert store.events(rid, "weights")[0]["step"] == paused_at
    m.resume(rid)
    _until(lambda: store.get_run(rid)["step"] >= paused_at + 3, what="steps after the resume")
    assert store.get_run(rid)["status"] == "running"
    m.stop(rid)
    assert cli_run["proc"].wait(60) == 0
    run = store.get_run(rid)
    assert run["status"] == "stopped" and run["step"] >= paused_at + 3
    # the new weight is recorded as weight/segmentation from the step it applies, the old one before
    w = {s: v for s, _, _, v, _ in store.metrics(rid, "train", key="weight/segmentation")}
    assert all(v == 1.0 for s, v in w.items() if s <= paused_at)
    assert all(v == 0.25 for s, v in w.items() if s > paused_at) and max(w) > paused_at
    assert [c["state"] for c in store.commands(rid)] == ["applied"] * 4  # pause, weights, resume, stop
    kinds = [e["kind"] for e in store.events(rid)]
    assert kinds.index("paused") < kinds.index("weights") < kinds.index("resumed")
    with pytest.raises(ConfigError, match=rf"run {rid} has ended \(stopped"):
        m.pause(rid)
    m.shutdown()


def test_a_method_that_sets_its_own_weights_refuses_a_retune_and_says_why(tmp_path):
    from tests.conftest import tiny_config

    store = RunStore(tmp_path)
    cfg = tiny_config()
    cfg = cfg.__class__.from_dict({**cfg.to_dict(), "weighting": {"method": "uw"}})
    rid = store.create_run(cfg.to_dict(), "uw", status="running")
    m = RunManager(tmp_path, max_concurrent=1, recover=False)
    with pytest.raises(ConfigError, match="uw does not use task weights.*log-variance"):
        m.set_weights(rid, {"classification": 2.0})
    assert store.commands(rid) == []
    m.shutdown()


def test_a_second_dashboard_leaves_the_first_ones_queue_alone(tmp_path):
    """Two dashboards on one runs directory: the one starting later does not mark the other's
    queued run interrupted (the old pid rule did), and steers that run like its own."""
    import dataclasses

    from tests.conftest import tiny_config

    first = RunManager(tmp_path, max_concurrent=1)
    base = tiny_config()
    busy = first.start(dataclasses.replace(base, optim=dataclasses.replace(base.optim, steps=100_000)))
    waiting = first.start(base)
    _until(lambda: first.store.get_run(busy)["status"] == "running", what="the first run")
    second = RunManager(tmp_path, max_concurrent=1)  # sweeps stale runs as it starts
    second.store.mark_interrupted()
    assert second.store.get_run(waiting)["status"] == "queued"
    assert second.is_active(waiting) and second.is_active(busy)
    second.stop(busy)  # a command through the store: the first dashboard's trainer obeys
    assert first.wait(busy, 60) == "stopped"
    assert first.wait(waiting, 120) == "finished"  # then the queued run got its slot
    first.shutdown()
    second.shutdown()
