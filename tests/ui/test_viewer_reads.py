"""A viewer's RunManager holds by construction: it is an allowlist of named reads, and so is the
store it hands out. Every public attribute of the real RunManager and RunStore is tried on them:
each is refused or in the allowlist, and every allowlisted one, called as the pages call it,
leaves the store's rows and the runs' files byte for byte as they were. A study runner built on a
viewer's manager refuses before its first write."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.ui.conftest import copy_finished_run, no_exceptions, page
from tests.ui.test_classroom import room  # noqa: F401  (a fixture)


@pytest.fixture
def filled(tiny_run, tmp_path):
    """A runs directory with what the pages read: a finished run (metrics, final checkpoint, an
    event, a command), a run queued, and a finished study over the finished run; its RunManager
    does not sweep (nothing changes the rows but what a test calls). ``{manager, store, run, study}``."""
    from mtl_core.runs.manager import RunManager
    from mtl_core.studies.runner import plan_rows
    from mtl_core.studies.spec import StudySpec, expand
    from mtl_core.studies.store import StudyStore
    from tests.studies.test_runner import BASE

    manager = RunManager(tmp_path, recover=False)
    store = manager.store
    rid = copy_finished_run(tiny_run["manager"].store, tiny_run["run_id"], store, "finished")
    store.add_event(rid, 5, "weights_changed", {"weights": {"classification": 2.0}})
    queued = store.create_run(store.get_run(rid)["config"], "queued", "cli", 100)
    store.send_command(queued, "pause")
    (store.run_dir(rid) / "notes.txt").write_text("a file of the run's own")
    spec = StudySpec.from_dict({"name": "a study", "base": BASE, "seeds": 1, "factors": {"weighting.method": ["ew"]}})
    studies = StudyStore(store)
    study = studies.create("a study", spec.to_dict(), plan_rows(expand(spec)))
    studies.attach(study, studies.plan(study)[0]["key"], rid)
    studies.set_state(study, "finished")
    yield SimpleNamespace(manager=manager, store=store, run=rid, study=study, dir=tmp_path)
    manager.shutdown()


def snapshot(root: Path) -> dict[str, object]:
    """Every row of every table (the owners' heartbeat aside: the manager's own clock) and the bytes
    of every file under the runs directory but the database's own."""
    conn = sqlite3.connect(f"{(root / 'runs.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {}
        for t in tables:
            cur = conn.execute(f'SELECT * FROM "{t}"')
            names = [d[0] for d in cur.description]
            rows[t] = sorted(repr(tuple(None if (t == "owners" and n == "heartbeat") else v
                                        for n, v in zip(names, r, strict=True))) for r in cur.fetchall())
        rows["user_version"] = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if not name.startswith("runs.sqlite"):
                files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"rows": rows, "files": files}


def _public(obj) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_")]


# each allowlisted read, called as the pages (and the readers they hand the store to) call it
def manager_calls(f) -> dict:
    return {
        "is_active": lambda m: m.is_active(f.run),
        "max_concurrent": lambda m: m.max_concurrent,
        "queue": lambda m: m.queue(),
        "store": lambda m: m.store,
    }


def store_calls(f) -> dict:
    from mtl_core.studies.store import StudyStore
    from mtl_core.studies.summary import summarize

    return {
        "chosen_checkpoint": lambda s: (s.chosen_checkpoint(f.run), s.chosen_checkpoint(f.run, "last")),
        "events": lambda s: s.events(f.run),
        "find_runs": lambda s: (s.find_runs(), s.find_runs("a study", statuses=("finished",), study=f.study, limit=5),
                                s.find_runs(label="x", ids=[f.run], config=True), s.find_runs(baseline_of=[f.run])),
        "get_run": lambda s: s.get_run(f.run),
        "latest_checkpoint": lambda s: (s.latest_checkpoint(f.run, "final"), s.latest_checkpoint(f.run)),
        "list_runs": lambda s: (s.list_runs(), s.list_runs(limit=5)),
        "metrics": lambda s: (s.metrics(f.run), s.metrics(f.run, split="test"),
                              s.metrics(f.run, split="val", key_prefix="classification/"),
                              s.metrics(f.run, split="train", key="loss/classification")),
        "metrics_after": lambda s: s.metrics_after(f.run, 0),
        "metrics_history": lambda s: s.metrics_history(f.run),
        "owners": lambda s: s.owners(),
        "query": lambda s: (StudyStore(s).list(), StudyStore(s).get(f.study), StudyStore(s).plan(f.study),
                            summarize(s, f.study)),
        "root": lambda s: s.root,
        "run_dir": lambda s: s.run_dir(f.run),
    }


def test_every_public_attribute_of_the_manager_and_its_store_is_a_named_read_or_refused(filled):
    from mtl_core.store.store import RunStore
    from ui.access import AccessError
    from ui.read_only import MANAGER_READS, STORE_READS, ViewerManager

    seen = ViewerManager(filled.manager)
    for view, real, reads in ((seen, filled.manager, MANAGER_READS), (seen.store, filled.store, STORE_READS)):
        assert sorted(dir(view)) == sorted(reads)  # what it offers, and nothing else
        assert set(reads) <= set(_public(real)), "an allowlisted name the real object does not have"
        for name in _public(real):
            if name in reads:
                value = getattr(view, name)
                assert value is not real and value is not filled.store and value is not filled.manager
                assert not hasattr(value, "__self__"), f"{name} hands out the object it is bound to"
            else:
                with pytest.raises(AccessError, match="View only"):
                    getattr(view, name)
        with pytest.raises(AccessError):
            view.store = filled.store  # nothing is replaced either
    assert not isinstance(seen.store, RunStore)
    # the commands say which control they are; the rest, that a viewer only reads
    with pytest.raises(AccessError, match="only the dashboard's owner can delete runs"):
        seen.delete(filled.run)
    with pytest.raises(AccessError, match="cannot use the run store's 'delete_run'"):
        seen.store.delete_run(filled.run)
    assert filled.store.get_run(filled.run) is not None


def test_every_allowlisted_read_changes_no_row_and_no_file(filled, monkeypatch):
    from mtl_core.store.store import RunStore
    from ui.read_only import MANAGER_READS, STORE_READS, ViewerManager

    writes = []
    real_tx = RunStore._tx
    me = threading.current_thread()  # the reads run here; managers' heartbeats beat in threads of their own

    def spy(self):
        if threading.current_thread() is me:
            writes.append(self.root)
        return real_tx(self)

    monkeypatch.setattr(RunStore, "_tx", spy)
    seen = ViewerManager(filled.manager)
    m_calls, s_calls = manager_calls(filled), store_calls(filled)
    assert set(m_calls) == MANAGER_READS and set(s_calls) == STORE_READS  # a new read says how pages call it
    before = snapshot(filled.dir)
    for name in sorted(MANAGER_READS):
        m_calls[name](seen)
    for name in sorted(STORE_READS):
        s_calls[name](seen.store)
    assert snapshot(filled.dir) == before
    assert not writes, "an allowlisted read opened a write transaction"
    # and they read what the store holds
    assert seen.store.get_run(filled.run) == filled.store.get_run(filled.run)
    assert seen.store.metrics(filled.run) == filled.store.metrics(filled.run)


def test_the_check_sees_a_writer(filled):
    """The snapshot this file compares is no formality: a writer called the same way changes it."""
    before = snapshot(filled.dir)
    filled.store.rename(filled.run, "renamed")
    assert snapshot(filled.dir) != before


def test_the_viewer_s_store_writes_nothing_even_when_asked_past_the_allowlist(filled):
    """Its reads run on a read-only SQLite connection: a writer reached some other way fails in SQLite."""
    from ui.read_only import _ReadOnlyRunStore

    ro = _ReadOnlyRunStore(filled.dir)
    before = snapshot(filled.dir)
    with pytest.raises(Exception, match="View only|readonly"):
        ro.rename(filled.run, "renamed")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.query("UPDATE runs SET name='renamed'")
    assert snapshot(filled.dir) == before


def test_a_study_runner_on_a_viewer_s_manager_refuses_before_any_write(filled, monkeypatch):
    """Today's hole: on a viewer's manager a runner paused a finished study and left an orphan
    study row before refusing. Each of its commands now refuses first."""
    import mtl_core.studies.runner as runner_module
    from mtl_core.studies.runner import StudyRunner
    from mtl_core.studies.spec import StudySpec
    from tests.studies.test_runner import BASE
    from ui.access import AccessError
    from ui.read_only import ViewerManager

    # a search of this study in flight in this process: a viewer's stop must not end it either
    search = SimpleNamespace(stop_event=threading.Event())
    monkeypatch.setitem(runner_module._SEARCHES, (str(filled.store.root.resolve()), filled.study),
                        (search, threading.Thread(target=lambda: None)))
    runner = StudyRunner(ViewerManager(filled.manager))
    spec = StudySpec.from_dict({"name": "another", "base": BASE, "seeds": 1, "factors": {"weighting.method": ["ew"]}})
    before = snapshot(filled.dir)
    for command in (lambda: runner.start(spec), lambda: runner.pause(filled.study), lambda: runner.resume(filled.study),
                    lambda: runner.stop(filled.study), lambda: runner.carry_on(filled.study),
                    lambda: runner.extend(filled.study, 3)):
        with pytest.raises(AccessError, match="View only"):
            command()
    assert snapshot(filled.dir) == before  # no study row, no state, no run changed
    assert not search.stop_event.is_set()
    assert runner.searching(filled.study) is False  # what the Studies page reads of it still works


@pytest.mark.parametrize("name, run, params", [
    ("home", None, ()), ("live", "live", ()), ("live", "stopped", ()), ("compare", None, ()),
    ("studies", None, (("study", "{study}"),)), ("lessons", None, ()), ("models", "twin-a", ()),
    ("predict", "twin-a", ()), ("inspect", "twin-a", ()), ("data", None, ()), ("setup", None, ()),
])
def test_every_page_opens_for_a_viewer_on_its_named_reads(room, tiny_run, name, run, params):  # noqa: F811
    """A read a page needs that is not in the allowlist shows here, as an exception or a refusal."""
    from streamlit.testing.v1 import AppTest

    from mtl_core.inspection.outputs import split_outputs
    from tests.ui.test_classroom import APP

    if name == "inspect":  # outputs someone computed: what a viewer may inspect
        split_outputs(tiny_run["manager"].store.latest_checkpoint(tiny_run["run_id"], "final")["path"], "val")
    at = AppTest.from_file(APP, default_timeout=120) if name == "home" else page(name, room.ids[run] if run else None,
                                                                                   timeout=120)
    for k, v in params:
        at.query_params[k] = v.format(study=room.study)
    at.run()
    no_exceptions(at)
    shown = " ".join(e.value for e in [*at.error, *at.warning, *at.info, *at.caption])
    assert "cannot use the run" not in shown, shown
    assert not room.calls


def test_on_postgresql_the_viewer_s_store_reads_and_its_writes_fail_in_the_server(postgres_url, tmp_path):
    """The same guarantee on the server: the viewer's session is read-only, so a write fails there."""
    import psycopg

    from mtl_core.store.store import RunStore
    from ui.read_only import ViewerStore, _ReadOnlyRunStore

    store = RunStore(tmp_path / "runs")
    rid = store.create_run({"tasks": ["classification"]}, "on the server", status="finished")
    viewer = ViewerStore(store)
    assert [r["name"] for r in viewer.list_runs()] == ["on the server"]
    ro = _ReadOnlyRunStore(store.root, store.url)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        ro.query("UPDATE runs SET name='renamed'")
    with pytest.raises(Exception, match="View only"):
        ro.rename(rid, "renamed")
    assert store.get_run(rid)["name"] == "on the server"
