"""Fixtures for the dashboard pages' tests: one tiny finished run shared by the whole session
(trained once with the RunManager), and a way to point the pages at a runs directory."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
UI_TASKS = ("classification", "detection", "segmentation", "depth")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """A finished 5-step run on 32 px scenes with four tasks: ``{"dir", "run_id", "manager"}``."""
    from mtl_core.runs.manager import get_manager

    d = tmp_path_factory.mktemp("ui_runs")
    manager = get_manager(d)
    base = tiny_config()
    run_id = manager.start(tiny_config(name="tiny-ui", tasks=UI_TASKS, optim=dataclasses.replace(base.optim, steps=5)))
    status = manager.wait(run_id, timeout=120)
    assert status == "finished", manager.store.get_run(run_id)["error"]
    return {"dir": d, "run_id": run_id, "manager": manager}


@pytest.fixture
def ui_runs(tiny_run, monkeypatch) -> dict:
    """The pages read the tiny run's runs directory (``MTL_RUNS_DIR``) during this test."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tiny_run["dir"]))
    return tiny_run


def page(name: str, run_id: str | None = None, timeout: float = 60, **params: str):
    """An AppTest of ``pages/<name>.py`` with ``run_id`` selected (as the sidebar picker would) and
    ``params`` in its URL's query."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=timeout)
    if run_id is not None:
        at.session_state["run_id"] = run_id
    for k, v in params.items():
        at.query_params[k] = v
    return at


def no_exceptions(at) -> None:
    assert not at.exception, [e.message + "\n" + "\n".join(e.stack_trace) for e in at.exception]


@pytest.fixture
def twin_runs(tiny_run, tmp_path, monkeypatch) -> dict:
    """Two finished runs in a fresh runs directory that share the tiny run's final checkpoint, so
    an ensemble of them must predict (and score) exactly what that one model does:
    ``{"store", "ids", "checkpoint"}``."""
    from mtl_core.store.store import RunStore

    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    source = tiny_run["manager"].store
    ck = source.latest_checkpoint(tiny_run["run_id"], "final") or source.latest_checkpoint(tiny_run["run_id"])
    store = RunStore(tmp_path)
    ids = [copy_finished_run(source, tiny_run["run_id"], store, name) for name in ("twin-a", "twin-b")]
    return {"store": store, "ids": ids, "checkpoint": ck["path"]}


def copy_finished_run(source, run_id: str, store, name: str) -> str:
    """A finished run in ``store`` with ``run_id``'s config, metrics and final checkpoint (the
    same file), as if trained from the command line; returns its id."""
    run = source.get_run(run_id)
    ck = source.latest_checkpoint(run_id, "final") or source.latest_checkpoint(run_id)
    rid = store.create_run(run["config"], name, "cli", run["total_steps"])
    store.set_status(rid, "running")
    store.log_metrics(rid, source.metrics(run_id))
    store.add_checkpoint(rid, ck["step"], ck["path"], "final")
    store.update_progress(rid, run["total_steps"])
    store.set_status(rid, "finished")
    return rid
