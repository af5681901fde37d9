"""Shared (classroom) mode, driven with Streamlit's AppTest: every control in ``ui.access.CONTROLS``
is refused for a viewer (disabled, saying why, and refused by the server when a hand-made client
clicks it anyway) and allowed for the owner; the owner's secret (link, sidebar, wrong, missing); the
viewers' lesson quota; and the live caches that two sessions share."""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

from tests.conftest import tiny_config
from tests.ui.conftest import copy_finished_run, no_exceptions, page
from tests.ui.test_lessons import TINY

TOKEN = "correct-horse-battery-staple"
APP = str(Path(__file__).resolve().parents[2] / "app.py")


@contextmanager
def ignoring_disabled():
    """A client that clicks a disabled button (a hand-made websocket client can): the server must refuse."""
    from streamlit.testing.v1 import element_tree

    with mock.patch.object(element_tree.Widget, "_assert_can_interact", lambda self: None):
        yield


def _reset_caches() -> None:
    from ui.roles import _classroom
    from ui.shared import _feeds

    _classroom.clear()
    _feeds.clear()


@dataclass
class Room:
    dir: Path
    store: object
    manager: object
    ids: dict[str, str]
    study: str
    calls: list[str] = field(default_factory=list)  # the commands that reached the RunManager (or a runner)


@pytest.fixture
def room(tiny_run, tmp_path, monkeypatch) -> Room:
    """A shared dashboard's runs directory: one run training elsewhere (alive), one stopped with a
    checkpoint, two finished runs sharing the tiny run's model, a stopped study and a lesson. Every
    command is recorded instead of carried out, so the tests see what reached the engine."""
    from mtl_core.runs.manager import get_manager
    from mtl_core.studies.runner import StudyRunner, plan_rows
    from mtl_core.studies.spec import StudySpec, expand
    from mtl_core.studies.store import StudyStore
    from tests.studies.test_runner import BASE

    lessons = tmp_path / "lessons"
    lessons.mkdir()
    (lessons / "1_tiny.json").write_text(json.dumps(TINY))
    for k, v in {"MTL_RUNS_DIR": str(tmp_path), "MTL_STUDIO_SHARED": "1", "MTL_STUDIO_OWNER_TOKEN": TOKEN,
                 "MTL_LESSONS_DIR": str(lessons)}.items():
        monkeypatch.setenv(k, v)
    _reset_caches()
    manager = get_manager(tmp_path)
    store = manager.store
    source = tiny_run["manager"].store
    done = source.get_run(tiny_run["run_id"])
    ck = source.latest_checkpoint(tiny_run["run_id"], "final")
    ids = {name: copy_finished_run(source, tiny_run["run_id"], store, name) for name in ("twin-a", "twin-b")}
    ids["stopped"] = store.create_run(done["config"], "stopped", "cli", 100, status="running")
    store.add_checkpoint(ids["stopped"], 5, ck["path"], "periodic")
    store.set_status(ids["stopped"], "stopped")
    ids["live"] = store.create_run(tiny_config(name="live").to_dict(), "live", "cli", 100, status="running")
    store.heartbeat(ids["live"], "gpu-node-3", 4242)  # alive, trained by another process
    store.log_metrics(ids["live"], [(s, "train", "loss/classification", 2.0 - s / 50, 0.0) for s in range(1, 21)])
    store.update_progress(ids["live"], 20)
    spec = StudySpec.from_dict({"name": "a study", "base": BASE, "seeds": 1, "factors": {"weighting.method": ["ew"]}})
    study = StudyStore(store).create("a study", spec.to_dict(), plan_rows(expand(spec)))
    StudyStore(store).set_state(study, "stopped")
    r = Room(tmp_path, store, manager, ids, study)

    def recorder(name: str, result: Callable = lambda *a, **k: None):
        def record(*args, **kwargs):
            r.calls.append(name)
            return result(*args, **kwargs)
        return record

    for name in ("start", "start_baselines", "resume_run", "pause", "resume", "stop", "set_weights", "delete"):
        monkeypatch.setattr(manager, name, recorder(name, (lambda *a, **k: {}) if name == "start_baselines"
                                                    else (lambda *a, **k: ids["live"]) if name == "start" else
                                                    (lambda *a, **k: None)))
    for name in ("start", "pause", "resume", "stop", "carry_on"):
        monkeypatch.setattr(StudyRunner, name, recorder(f"study.{name}", (lambda *a, **k: study) if name == "start"
                                                        else (lambda *a, **k: {"done": 0, "resumed": 0, "started": 0,
                                                                               "reused": 0, "running": 0})))
    for module, fn in (("compress", "compress_run"), ("structured", "prune_run"), ("export", "export_run")):
        monkeypatch.setattr(f"mtl_core.deploy.{module}.{fn}", recorder(fn))
    yield r
    _reset_caches()


def _as(role: str, at):
    if role == "owner":
        at.query_params["owner"] = TOKEN  # the owner's link, once
    return at


def _button(at, key: str | None = None, label: str | None = None):
    found = [b for b in at.button if (key is None or b.key == key) and (label is None or b.label == label)]
    assert found, f"no button {key or label}: {[b.key or b.label for b in at.button]}"
    return found[0]


# each control: how to reach it, and what shows it was carried out
@dataclass(frozen=True)
class Scenario:
    page: str
    key: str | None = None
    label: str | None = None
    run: str | None = None  # which run of the room the page shows
    params: tuple = ()
    prepare: Callable | None = None  # at -> at, before the click
    done: Callable = lambda room, at: False  # whether the action took effect


NOTE = "checked by the owner"


def _write_note(room, at):
    box = at.text_area(key=f"live_note_{room.ids['twin-a']}")
    if not box.disabled:  # a viewer's is: nothing to type into
        box.input(NOTE)
    return at


def _pick_doomed(room, at):
    at.multiselect(key="compare_delete_pick").set_value([room.ids["twin-b"]]).run()
    return at


SCENARIOS: dict[str, Scenario] = {
    "run.start": Scenario("home", key="home.demo", done=lambda room, at: "start" in room.calls),
    "run.pause": Scenario("live", key="live_pause_{live}", run="live", done=lambda room, at: "pause" in room.calls),
    "run.stop": Scenario("live", key="live_stop_{live}", run="live", done=lambda room, at: "stop" in room.calls),
    "run.continue": Scenario("live", key="live_continue_{stopped}", run="stopped",
                             done=lambda room, at: "resume_run" in room.calls),
    "run.retune": Scenario("live", label="Apply", run="live", done=lambda room, at: "set_weights" in room.calls),
    "run.delete": Scenario("compare", key="compare_delete", prepare=_pick_doomed,
                           done=lambda room, at: at.session_state["compare_confirm"] == [room.ids["twin-b"]]
                           if "compare_confirm" in at.session_state else False),
    "run.annotate": Scenario("live", key="live_notes_save_{twin-a}", run="twin-a", prepare=_write_note,
                             done=lambda room, at: room.store.get_run(room.ids["twin-a"])["note"] == NOTE),
    "run.baselines": Scenario("compare", key="compare_baselines", done=lambda room, at: "start_baselines" in room.calls),
    "ensemble.evaluate": Scenario("compare", key="compare_ens_go",
                                  done=lambda room, at: "compare_ens_settings" in at.session_state),
    "study.start": Scenario("setup", key="setup.study_start", done=lambda room, at: "study.start" in room.calls),
    "study.steer": Scenario("studies", key="study_carry_on_{study}", params=(("study", "{study}"),),
                            done=lambda room, at: "study.carry_on" in room.calls),
    "lesson.start": Scenario("lessons", key="lesson_start", done=lambda room, at: "study.start" in room.calls),
    "model.compress": Scenario("models", key="models_compress", run="twin-a",
                               done=lambda room, at: "compress_run" in room.calls),
    "classroom.settings": Scenario("app", key="access_viewer_lessons",
                                   done=lambda room, at: _classroom_settings().viewer_lessons),
}


def _classroom_settings():
    from ui.roles import classroom

    return classroom().settings


def test_every_control_has_a_scenario():
    from ui.access import CONTROLS

    assert set(SCENARIOS) == set(CONTROLS)


def _open(room: Room, s: Scenario, role: str):
    from streamlit.testing.v1 import AppTest

    names = {**room.ids, "study": room.study}
    if s.page == "app":  # the sidebar's classroom box, as app.py draws it above every page
        at = AppTest.from_function(_sidebar_app, default_timeout=60)
    elif s.page == "home":  # its page links need app.py's navigation
        at = AppTest.from_file(APP, default_timeout=120)
    else:
        at = page(s.page, room.ids[s.run] if s.run else None, timeout=120)
    for k, v in s.params:
        at.query_params[k] = v.format(**names)
    at = _as(role, at)
    at.run()
    no_exceptions(at)
    if s.prepare:
        at = s.prepare(room, at)
    return at, (s.key.format(**names) if s.key else None)


def _sidebar_app():
    from ui.roles import access_sidebar

    access_sidebar()


@pytest.mark.parametrize("action", sorted(SCENARIOS))
def test_a_viewer_sees_each_control_disabled_saying_why_and_the_server_refuses_a_forced_click(room, action):
    from ui.access import CONTROLS

    s = SCENARIOS[action]
    at, key = _open(room, s, "viewer")
    if action == "classroom.settings":  # a viewer has no settings to change, only the sign-in
        assert not [t for t in at.toggle if t.key == key]
        assert any("you are watching" in m.value for m in at.markdown)
        return
    widget = _button(at, key, s.label)
    assert widget.disabled
    assert "only the dashboard's owner can" in widget.help and CONTROLS[action] in widget.help
    with ignoring_disabled():
        widget.click().run()
    no_exceptions(at)
    assert not s.done(room, at), f"{action} was carried out for a viewer"
    assert not room.calls, room.calls


@pytest.mark.parametrize("action", sorted(SCENARIOS))
def test_the_owner_unlocked_by_the_link_can_use_each_control(room, action):
    s = SCENARIOS[action]
    at, key = _open(room, s, "owner")
    assert "owner" not in at.query_params  # the secret left the address bar at once
    if action == "classroom.settings":
        at.toggle(key=key).set_value(True).run()
    else:
        widget = _button(at, key, s.label)
        assert not widget.disabled, widget.help
        widget.click().run()
    assert s.done(room, at), f"{action} was not carried out for the owner: {room.calls}"


@pytest.mark.parametrize("action", sorted(set(SCENARIOS) - {"classroom.settings"}))
def test_a_page_drawn_for_the_owner_is_refused_once_the_session_is_locked(room, action):
    """Streamlit drops a disabled widget's click itself; this is the other way in: a page drawn
    while the session was the owner's, clicked after it locked (the sidebar's Lock). Every
    action checks the role again on the server when it runs."""
    s = SCENARIOS[action]
    at, key = _open(room, s, "owner")
    widget = _button(at, key, s.label)
    assert not widget.disabled
    del at.session_state["access_role"]
    widget.click().run()
    no_exceptions(at)
    assert not s.done(room, at), f"{action} was carried out after the session locked"
    assert not room.calls, room.calls


def test_a_wrong_or_missing_secret_leaves_a_viewer_and_the_right_one_typed_unlocks(room):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_sidebar_app, default_timeout=30)
    at.query_params["owner"] = "not-the-secret"
    at.run()
    assert "owner" not in at.query_params
    assert any("you are watching" in m.value for m in at.markdown)
    assert any("not the owner's secret" in c.value for c in at.caption)
    at.text_input(key="access_secret").input("also-wrong")
    at.button[0].click().run()  # the form's Unlock
    assert at.session_state["access_attempts"] == 2 and "access_role" not in at.session_state
    at.run()  # another rerun (the live page's run ending, say) before the person read it: the answer stays
    assert any("not the owner's secret" in c.value and "3 tries left" in c.value for c in at.caption)
    at.text_input(key="access_secret").input(TOKEN)
    at.button[0].click().run()
    assert any("you control this dashboard" in m.value for m in at.markdown)
    assert not at.text_input  # the owner's sidebar asks for no secret
    # no secret at all: a viewer, and the pages' controls say why
    plain = page("live", room.ids["live"]).run()
    assert _button(plain, f"live_stop_{room.ids['live']}").disabled


def test_five_wrong_secrets_stop_the_sidebar_asking(room):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_sidebar_app, default_timeout=30).run()
    for _ in range(5):
        at.text_input(key="access_secret").input("wrong")
        at.button[0].click().run()
    assert not at.text_input and any("Too many wrong secrets" in c.value for c in at.caption)


def test_outside_shared_mode_everyone_controls_as_before(room, monkeypatch):
    monkeypatch.delenv("MTL_STUDIO_SHARED")
    at = page("live", room.ids["live"]).run()
    assert not _button(at, f"live_stop_{room.ids['live']}").disabled
    _button(at, f"live_stop_{room.ids['live']}").click().run()
    assert room.calls == ["stop"]


def test_viewers_may_start_lesson_studies_within_the_quota_when_the_owner_allows(room):
    from mtl_core.studies.store import StudyStore
    from ui.roles import classroom

    viewer = page("lessons", timeout=120).run()
    start = _button(viewer, "lesson_start")
    assert start.disabled and "only the dashboard's owner can run a lesson's study" in start.help
    classroom().update(viewer_lessons=True)  # the owner's sidebar toggle (test above)
    viewer.run()
    start = _button(viewer, "lesson_start")
    assert not start.disabled, start.help
    start.click().run()
    no_exceptions(viewer)
    assert room.calls == ["study.start"]
    assert classroom().viewer_studies() == {room.study: "test session id"}
    # the study it started trains (one of its runs is the live one): this browser has used its quota
    studies = StudyStore(room.store)
    studies.attach(room.study, studies.plan(room.study)[0]["key"], room.ids["live"])
    viewer.run()
    start = _button(viewer, "lesson_start")
    assert start.disabled and "You already have 1 lesson study queued or training" in start.help
    assert any("You already have 1" in c.value for c in viewer.caption)  # said on the page, not only on hover
    with ignoring_disabled():
        start.click().run()
    assert room.calls == ["study.start"]  # a forced click does not start a second
    # another browser may, until the class's quota or the queue's limit is reached
    with mock.patch("ui.roles.browser_id", return_value="another browser"):
        other = page("lessons", timeout=120).run()
        assert not _button(other, "lesson_start").disabled
        classroom().update(max_viewer_studies=1)
        other.run()
        assert "The class has 1 lesson studies queued or training" in _button(other, "lesson_start").help
        classroom().update(max_viewer_studies=3, max_queued_runs=2)
        other.run()
        assert "would pass its limit of 2" in _button(other, "lesson_start").help
    # the owner is never held by the viewers' quota
    owner = _as("owner", page("lessons", timeout=120)).run()
    assert not _button(owner, "lesson_start").disabled


def test_the_quota_counts_only_studies_still_queued_or_training():
    from ui.access import OWNER, VIEWER, Classroom, Settings

    room = Classroom("s" * 16, Settings(viewer_lessons=True, per_session=1, max_viewer_studies=2, max_queued_runs=10))
    alive = {"a": True, "b": False}
    room.start_lesson(VIEWER, "s1", 1, lambda: 0, alive.get, lambda: "a")
    room.start_lesson(VIEWER, "s2", 1, lambda: 0, alive.get, lambda: "b")
    assert not room.may_start_lesson(VIEWER, "s1", 4, 0, alive.get).allowed  # s1's study trains
    assert room.may_start_lesson(VIEWER, "s2", 4, 0, alive.get).allowed  # s2's has finished
    assert not room.may_start_lesson(VIEWER, "s3", 4, 7, alive.get).allowed  # 7 queued + 4 > 10
    assert room.may_start_lesson(OWNER, "s1", 400, 400, alive.get).allowed
    room.update(viewer_lessons=False)
    assert "only the dashboard's owner" in room.may_start_lesson(VIEWER, "s3", 1, 0, alive.get).reason
    with pytest.raises(KeyError, match="no classroom setting"):
        room.update(teacher="me")


def test_a_browser_is_one_viewer_across_reloads_and_another_browser_is_another():
    """Streamlit masks its XSRF cookie afresh on every page load; the browser's key is the token
    under the mask (cookies made by Streamlit's own code, so a change of its format fails here)."""
    import os as _os

    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    from ui.access import browser_key

    token, other = _os.urandom(32), _os.urandom(32)
    first, reload = generate_xsrf_token_string(token, 1700000000), generate_xsrf_token_string(token, 1700000000)
    assert first != reload  # masked differently at each load
    assert browser_key(first) == browser_key(reload) == browser_key(f'"{first}"') is not None
    assert browser_key(generate_xsrf_token_string(other, 1700000000)) != browser_key(first)
    assert token.hex() not in browser_key(first)  # the key does not give the token away
    for bad in ("", "2|zz|00|1", "2|0011|aabb|1", "not hex", "2|only|three"):
        assert browser_key(bad) is None, bad


def test_the_owner_s_settings_and_the_viewers_studies_outlive_a_restart(tmp_path, caplog):
    from ui.access import VIEWER, Classroom, Settings

    path = tmp_path / "runs" / "classroom.json"
    room = Classroom.load("the-secret-0123456789", frozenset(), path)
    assert room.settings == Settings()  # nothing kept yet
    room.update(viewer_lessons=True, per_session=2)
    room.start_lesson(VIEWER, "browser-a", 1, lambda: 0, lambda study: True, lambda: "study-1")
    again = Classroom.load("the-secret-0123456789", frozenset(), path)  # the server restarted
    assert again.settings.viewer_lessons and again.settings.per_session == 2
    assert again.viewer_studies() == {"study-1": "browser-a"}
    assert "the-secret" not in path.read_text()  # the secret is never written down
    path.write_text("{not json")
    with caplog.at_level("WARNING"):
        broken = Classroom.load("the-secret-0123456789", frozenset(), path)
    assert broken.settings == Settings() and "unreadable" in caplog.text  # defaults, not a crash
    (tmp_path / "a file").write_text("")  # a runs directory that cannot be written
    stuck = Classroom.load("s" * 16, frozenset(), tmp_path / "a file" / "classroom.json")
    with caplog.at_level("WARNING"):
        stuck.update(viewer_lessons=True)  # cannot be kept: still applies to this server
    assert stuck.settings.viewer_lessons and "could not keep the classroom settings" in caplog.text


def test_a_viewer_s_run_manager_refuses_every_command_saying_which_control(room):
    from ui.access import CONTROLS, MANAGER_COMMANDS, AccessError
    from ui.read_only import ViewerManager

    seen = ViewerManager(room.manager)
    for name, action in MANAGER_COMMANDS.items():
        with pytest.raises(AccessError, match=f"only the dashboard's owner can {CONTROLS[action]}"):
            getattr(seen, name)("run-1")
    assert not room.calls


def test_two_sessions_watching_a_run_share_one_read_and_the_same_figures(room, monkeypatch):
    import ui.live_view
    from tests.ui.test_live import charts
    from ui.shared import feeds

    built = []
    real = ui.live_view.task_figure
    monkeypatch.setattr(ui.live_view, "task_figure", lambda *a, **k: built.append(1) or real(*a, **k))
    first = page("live", room.ids["live"]).run()
    second = page("live", room.ids["live"]).run()
    no_exceptions(first), no_exceptions(second)
    tasks = room.store.get_run(room.ids["live"])["config"]["tasks"]
    assert len(built) == len(tasks)  # one panel per task, built once for both sessions
    assert feeds().feed(room.ids["live"]).builds == 1
    a = {c.key: c.spec for c in charts(first)}
    b = {c.key: c.spec for c in charts(second)}
    assert a and a == b
    # new rows: the next refresh (after the freshness window) reads them once, for everyone
    room.store.log_metrics(room.ids["live"], [(21, "train", "loss/classification", 0.5, 0.0)])
    monkeypatch.setattr("ui.shared.FRESH_S", 0.0)
    first.run()
    second.run()
    assert feeds().feed(room.ids["live"]).cache.last_step == 21
    c = {c.key: c.spec for c in charts(first)}
    d = {c.key: c.spec for c in charts(second)}
    assert c == d and c != a


def test_in_shared_mode_an_upload_is_limited_to_10_mb_and_says_so(room, monkeypatch):
    at = page("predict", room.ids["twin-a"], timeout=120).run()
    uploader = at.get("file_uploader")[0].proto
    assert uploader.max_upload_size_mb == 10 and "up to 10 MB each, 8 at a time" in uploader.help
    monkeypatch.delenv("MTL_STUDIO_SHARED")  # one's own dashboard: the server's limit only
    at = page("predict", room.ids["twin-a"], timeout=120).run()
    assert at.get("file_uploader")[0].proto.max_upload_size_mb != 10


def test_without_a_token_the_server_makes_one_and_prints_the_owner_link(capsys, tmp_path):
    from ui.roles import _classroom

    _classroom.clear()
    made = _classroom("", "", str(tmp_path))
    assert len(made.secret) >= 20 and f"/?owner={made.secret}" in capsys.readouterr().err
    short = _classroom("1234", "", str(tmp_path))
    assert "short enough to guess" in capsys.readouterr().err and short.secret == "1234"
    _classroom.clear()


def test_a_fresh_memo_is_computed_once_for_every_session_until_its_runs_move_and_it_ages(monkeypatch):
    import ui.shared
    from ui.shared import fresh_memo

    clock = [100.0]
    monkeypatch.setattr(ui.shared.time, "monotonic", lambda: clock[0])
    computed = []

    def compute():
        computed.append(1)
        return len(computed)

    assert fresh_memo("test_memo", "k", ("step", 1), compute) == 1
    assert fresh_memo("test_memo", "k", ("step", 1), compute) == 1  # a second viewer: the same result
    clock[0] += ui.shared.FRESH_S / 2
    assert fresh_memo("test_memo", "k", ("step", 2), compute) == 1  # moved, but fresh enough for a live chart
    clock[0] += ui.shared.FRESH_S
    assert fresh_memo("test_memo", "k", ("step", 3), compute) == 2  # moved and no longer fresh: read again
    assert fresh_memo("test_memo", "other", ("step", 3), compute) == 3  # another study, its own entry
    # a run that ended (the statuses changed) is drawn from its last rows at once, however fresh
    assert fresh_memo("test_memo", "run", ("running", 7), compute, settled="running") == 4
    assert fresh_memo("test_memo", "run", ("running", 8), compute, settled="running") == 4
    assert fresh_memo("test_memo", "run", ("finished", 9), compute, settled="finished") == 5


def test_a_run_that_ended_is_drawn_from_its_last_rows_at_once(room):
    from tests.ui.test_live import charts, values

    rid = room.ids["live"]
    at = page("live", rid).run()
    room.store.log_metrics(rid, [(s, "train", "loss/classification", 0.3, 0.0) for s in range(21, 26)])
    room.store.update_progress(rid, 25)
    room.store.set_status(rid, "finished")
    at.run()  # within the shared view's freshness: an ended run is read again all the same
    no_exceptions(at)
    fig = {c.key: c.spec for c in charts(at)}[f"live_task_{rid}_classification"]
    assert max(values(fig["data"][0]["x"])) == 25
