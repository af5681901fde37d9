"""What a class of viewers can make a shared dashboard do is bounded: eight lesson starts at once
from one browser start one study."""
from __future__ import annotations

import threading

import pytest

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
