"""What a class of viewers can make a shared dashboard do is bounded: eight lesson starts at once
from one browser start one study; a viewer's Inspect reads the outputs someone computed and
computes only with the owner's leave, a few at a time, into the run's own folder; and every upload
has one limit."""
from __future__ import annotations

import shutil
import threading

import pytest

from tests.ui.conftest import no_exceptions, page
from tests.ui.test_classroom import room  # noqa: F401  (a fixture)

WAIT = 60  # seconds: only a hung test waits this long; no outcome depends on it


# ------------------------------------------------------------------ lesson starts at once
def _spec():
    from mtl_core.studies.spec import StudySpec
    from tests.studies.test_runner import BASE

    return StudySpec.from_dict({"name": "lesson", "base": BASE, "seeds": 2, "factors": {"weighting.method": ["ew"]}})


@pytest.mark.parametrize("browsers, expected, limit", [
    (["one browser"] * 8, 1, "each browser may run 1 at a time"),
    ([f"browser {i}" for i in range(8)], 3, "the most the owner allows (3)"),
])
def test_lesson_starts_at_once_start_only_what_the_quota_allows(tmp_path, monkeypatch, browsers, expected, limit):
    """Eight clicks of "Run this lesson" at once, through the function the Lessons page calls.
    Each start that gets through is held inside the engine until every click has either got
    through or been refused: a check not held with the start would let all eight through."""
    from mtl_core.runs.manager import RunManager
    from mtl_core.studies.spec import expand
    from mtl_core.studies.store import StudyStore
    from ui.access import VIEWER, AccessError, Classroom, Settings
    from ui.lesson_start import start_lesson_study

    manager = RunManager(tmp_path / "runs", recover=False)
    store = manager.store
    arrived, go = threading.Semaphore(0), threading.Event()
    mine = threading.local()

    def queue_only(config, name="", source="dashboard", plan_key=None, tags=None):
        """The manager's start, queueing without training (the quota counts queued runs)."""
        if not getattr(mine, "arrived", False):
            mine.arrived = True
            arrived.release()
            assert go.wait(WAIT)
        return store.create_run(config.to_dict(), name or config.name, source, config.optim.steps,
                                plan_key=plan_key, tags=tags)

    monkeypatch.setattr(manager, "start", queue_only)
    classroom = Classroom("s" * 16, Settings(viewer_lessons=True, per_session=1, max_viewer_studies=3,
                                             max_queued_runs=500))
    barrier = threading.Barrier(len(browsers))
    started, refused = [], []

    def click(browser: str) -> None:
        barrier.wait(WAIT)
        try:
            started.append(start_lesson_study(classroom, manager, _spec(), VIEWER, browser))
        except AccessError as e:
            refused.append(str(e))
            arrived.release()

    threads = [threading.Thread(target=click, args=(b,)) for b in browsers]
    try:
        for t in threads:
            t.start()
        for _ in threads:
            assert arrived.acquire(timeout=WAIT), "a click neither started nor was refused"
        go.set()
        for t in threads:
            t.join(WAIT)
        assert len(started) == expected and len(refused) == len(browsers) - expected, (started, refused)
        assert all(limit in r for r in refused), refused
        studies = StudyStore(store).list()
        assert sorted(s["id"] for s in studies) == sorted(started)  # one study row per start, no orphan
        assert len(store.list_runs()) == expected * len(expand(_spec()))
        assert set(classroom.viewer_studies()) == set(started)
    finally:
        go.set()
        manager.shutdown()


def test_a_lesson_start_that_fails_gives_its_place_back(tmp_path, monkeypatch):
    from mtl_core.errors import MTLError
    from mtl_core.runs.manager import RunManager
    from ui.access import VIEWER, Classroom, Settings
    from ui.lesson_start import start_lesson_study

    manager = RunManager(tmp_path / "runs", recover=False)
    classroom = Classroom("s" * 16, Settings(viewer_lessons=True))
    try:
        monkeypatch.setattr(manager, "start", lambda *a, **k: (_ for _ in ()).throw(MTLError("disk full")))
        with pytest.raises(MTLError, match="disk full"):
            start_lesson_study(classroom, manager, _spec(), VIEWER, "a browser")
        monkeypatch.setattr(manager, "start", lambda config, **k: manager.store.create_run(config.to_dict()))
        assert start_lesson_study(classroom, manager, _spec(), VIEWER, "a browser")  # its place was given back
    finally:
        manager.shutdown()


# ------------------------------------------------------------------ a viewer's Inspect
@pytest.fixture
def fresh_run(room, tiny_run, monkeypatch):  # noqa: F811
    """A finished run in the room with a checkpoint file of its own, in its own folder, that nobody
    opened on Inspect; and a count of the per-sample computations (``mtl_core.inspection.outputs.compute``)."""
    import mtl_core.inspection.outputs as outputs_module
    from mtl_core.inspection.outputs import cache_path
    from tests.ui.conftest import copy_finished_run

    store = room.store
    rid = copy_finished_run(tiny_run["manager"].store, tiny_run["run_id"], store, "nobody-inspected")
    source = store.latest_checkpoint(rid, "final")["path"]
    own = store.run_dir(rid) / "final.pt"
    shutil.copyfile(source, own)
    store.add_checkpoint(rid, store.latest_checkpoint(rid)["step"], str(own), "final")  # the newest: the one used
    with store.transaction() as c:
        c.execute("DELETE FROM checkpoints WHERE run_id=? AND path=?", (rid, source))
    assert store.latest_checkpoint(rid, "final")["path"] == str(own) and not cache_path(own, "val").exists()
    computed = []
    real = outputs_module.compute
    monkeypatch.setattr(outputs_module, "compute", lambda *a, **k: computed.append(a[1]) or real(*a, **k))
    return rid, own, computed


def _inspect(run_id: str, owner: bool = False):
    from tests.ui.test_classroom import TOKEN

    at = page("inspect", run_id, timeout=120)
    if owner:
        at.query_params["owner"] = TOKEN
    return at.run()


def _said(at) -> str:
    return " ".join(e.value for e in [*at.info, *at.error, *at.caption, *at.markdown])


def test_a_viewer_s_inspect_reads_what_is_kept_and_computes_nothing_without_the_owner_s_leave(room, fresh_run):  # noqa: F811
    from mtl_core.inspection.outputs import cache_path
    from ui import inspect_view as iv

    rid, ck, computed = fresh_run
    viewer = _inspect(rid)
    no_exceptions(viewer)
    assert "have not been computed yet" in _said(viewer) and "Classroom settings" in _said(viewer)
    assert not computed and not cache_path(ck, "val").exists()  # no model pass, nothing written
    owner = _inspect(rid, owner=True)  # the owner opens it: computed once, kept beside the checkpoint
    no_exceptions(owner)
    assert computed == ["val"] and cache_path(ck, "val").is_file()
    iv.outputs.clear()  # a restarted server: the viewer reads the kept file, with no model pass
    viewer.run()
    no_exceptions(viewer)
    assert "of 32 samples" in _said(viewer) and "outputs kept beside the checkpoint" in _said(viewer)
    assert computed == ["val"]


def test_with_the_owner_s_leave_viewers_compute_a_few_at_a_time_into_the_run_s_folder(room, fresh_run):  # noqa: F811
    from mtl_core.inspection.outputs import cache_path
    from ui.access import VIEWER
    from ui.roles import classroom
    from ui.run_files import run_files

    rid, ck, computed = fresh_run
    classroom().update(viewer_inspect=True, max_inspect_builds=1)
    with classroom().inspect_build(VIEWER, "Another run's outputs"):  # another viewer computing now
        busy = _inspect(rid)
        no_exceptions(busy)
        assert "the most the owner allows at a time (1)" in _said(busy) and not computed
    viewer = _inspect(rid)  # the place is free again
    no_exceptions(viewer)
    assert computed == ["val"] and "of 32 samples" in _said(viewer)
    # what it wrote is the run's: listed with its files, and gone with it
    kept = cache_path(ck, "val")
    assert run_files(room.store.run_dir(rid))["Inspect outputs"] == kept.stat().st_size
    models = page("models", rid, timeout=120).run()
    no_exceptions(models)
    assert any("Inspect outputs" in c.value and "deleted with the run" in c.value for c in models.caption)
    room.store.delete_run(rid)
    assert not kept.exists()


def test_the_owner_lets_viewers_compute_from_the_sidebar_and_sets_how_many_at_a_time(room):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    from tests.ui.test_classroom import TOKEN, _sidebar_app
    from ui.roles import classroom

    viewer = AppTest.from_function(_sidebar_app, default_timeout=30).run()
    assert not [t for t in viewer.toggle if t.key == "access_viewer_inspect"]  # not a viewer's to change
    owner = AppTest.from_function(_sidebar_app, default_timeout=30)
    owner.query_params["owner"] = TOKEN
    owner.run()
    assert owner.number_input(key="access_max_inspect_builds").disabled  # off by default
    owner.toggle(key="access_viewer_inspect").set_value(True).run()
    owner.number_input(key="access_max_inspect_builds").set_value(3).run()
    assert classroom().settings.viewer_inspect and classroom().settings.max_inspect_builds == 3


def test_the_class_s_places_to_compute_hold_when_viewers_ask_at_once():
    from ui.access import OWNER, VIEWER, AccessError, Classroom, Settings

    classroom = Classroom("s" * 16, Settings(viewer_inspect=True, max_inspect_builds=2))
    barrier, arrived, go = threading.Barrier(6), threading.Semaphore(0), threading.Event()
    inside, refused = [], []

    def ask(i: int) -> None:
        barrier.wait(WAIT)
        try:
            with classroom.inspect_build(VIEWER, "These outputs"):
                inside.append(i)
                arrived.release()
                assert go.wait(WAIT)
        except AccessError as e:
            refused.append(str(e))
            arrived.release()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for _ in threads:
        assert arrived.acquire(timeout=WAIT)
    with classroom.inspect_build(OWNER, "The owner's"):  # the owner is never held by the viewers' places
        pass
    go.set()
    for t in threads:
        t.join(WAIT)
    assert len(inside) == 2 and len(refused) == 4
    assert all("the most the owner allows at a time (2)" in r for r in refused)
    for _ in range(2):  # every place came back
        with classroom.inspect_build(VIEWER, "These outputs"):
            pass
    classroom.update(viewer_inspect=False)
    with pytest.raises(AccessError, match="lets viewers compute them"):
        with classroom.inspect_build(VIEWER, "These outputs"):
            pass


# ------------------------------------------------------------------ one upload limit
def test_every_upload_of_a_shared_dashboard_has_the_same_limit(room, tiny_run):  # noqa: F811
    from mtl_core.inspection.outputs import split_outputs
    from ui.access import SHARED_UPLOAD_MB

    ck = tiny_run["manager"].store.latest_checkpoint(tiny_run["run_id"], "final")["path"]
    split_outputs(ck, "val")  # kept beside the checkpoint the room's runs share: a viewer may inspect them
    predict = page("predict", room.ids["twin-a"], timeout=120).run()
    inspect = page("inspect", room.ids["twin-a"], timeout=120)
    inspect.session_state["inspect_view"] = "compare"
    inspect.session_state["inspect_cmp_source"] = "upload"
    inspect.run()
    setup = page("setup", timeout=120).run()
    limits = {}
    for name, at in (("predict", predict), ("inspect", inspect), ("setup", setup)):
        no_exceptions(at)
        uploaders = at.get("file_uploader")
        assert uploaders, f"no upload on {name}"
        limits[name] = {u.proto.max_upload_size_mb for u in uploaders}
    assert limits == {"predict": {SHARED_UPLOAD_MB}, "inspect": {SHARED_UPLOAD_MB}, "setup": {SHARED_UPLOAD_MB}}
    assert f"up to {SHARED_UPLOAD_MB} MB" in inspect.get("file_uploader")[0].proto.help
