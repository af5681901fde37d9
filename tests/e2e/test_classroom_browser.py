"""A classroom in a real browser: the dashboard in shared mode, one owner and one viewer, each in a
Chromium context of their own (two people, two cookie jars). The owner unlocks with the link and
starts the demo; the viewer watches it train on the Live page with every control disabled, fails
to unlock with a wrong secret, and sees the run stop when the owner stops it; then, let by the owner,
the viewer runs a lesson's study and a reload of their browser does not give them a second, while
another student's browser still may. One student's eight tabs clicking "Run this lesson" at once
start one study. Screenshots go to ``test-artifacts/e2e/classroom-*.png``.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.e2e.test_browser import (
    ARTIFACTS,
    SLOW,
    _charts_grow,
    _settle,
    serve,
    small_lesson,
)

pytestmark = pytest.mark.slow
TOKEN = "classroom-secret-0123456789"


def _sidebar(page: Any) -> str:
    return page.locator('[data-testid="stSidebar"]').inner_text()


def _button(page: Any, label: str) -> Any:
    return page.get_by_role("button", name=re.compile(rf"{label}$"))  # after its icon's name


def test_an_owner_and_a_viewer_in_two_browsers(browser, tmp_path):
    lessons = str(small_lesson(tmp_path / "lessons"))
    with serve(tmp_path, MTL_STUDIO_SHARED="1", MTL_STUDIO_OWNER_TOKEN=TOKEN, MTL_LESSONS_DIR=lessons) as url:
        owner_ctx, viewer_ctx = (browser.new_context(viewport={"width": 1280, "height": 1400}) for _ in range(2))
        owner, viewer = owner_ctx.new_page(), viewer_ctx.new_page()
        for p in (owner, viewer):
            p.set_default_timeout(SLOW)
        try:
            # the viewer arrives first: the Home page's start is disabled, the sidebar says who they are
            viewer.goto(url + "/")
            viewer.get_by_role("button", name="Start a demo run").wait_for()
            _settle(viewer)
            assert "you are watching" in _sidebar(viewer)
            assert viewer.get_by_role("button", name="Start a demo run").is_disabled()

            # the owner's link unlocks control and leaves the address bar at once
            owner.goto(f"{url}/?owner={TOKEN}")
            owner.get_by_text("· you control this dashboard").wait_for()
            _settle(owner)
            assert TOKEN not in owner.url
            owner.get_by_role("button", name="Start a demo run").click()
            owner.wait_for_url(re.compile(r"/live\?run="))
            run_id = re.search(r"run=([^&]+)", owner.url).group(1)
            _button(owner, "Pause").wait_for()
            assert _button(owner, "Stop").is_enabled()

            # the viewer opens the same run: it trains before their eyes; its controls are locked
            viewer.goto(f"{url}/live?run={run_id}")
            _charts_grow(viewer, "the viewer's live charts", 40)
            assert _button(viewer, "Stop").is_disabled() and _button(viewer, "Pause").is_disabled()
            assert viewer.get_by_text("View only: the dashboard's owner pauses, stops and retunes runs").is_visible()
            viewer.screenshot(path=str(ARTIFACTS / "classroom-viewer-live.png"))

            # a wrong secret typed into the sidebar leaves them a viewer
            viewer.locator('[data-testid="stSidebar"]').get_by_text("Owner sign-in").click()
            viewer.get_by_label("Owner's secret", exact=True).fill("a guess")
            viewer.locator('[data-testid="stSidebar"] button').filter(has_text="Unlock").click()
            viewer.get_by_text("That is not the owner's secret").wait_for()
            assert "you are watching" in _sidebar(viewer) and _button(viewer, "Stop").is_disabled()

            # the owner stops the run; the viewer's page follows without a reload
            owner.screenshot(path=str(ARTIFACTS / "classroom-owner-live.png"))
            _button(owner, "Stop").click()
            viewer.get_by_text(re.compile("stopped")).first.wait_for(timeout=SLOW)
            viewer.screenshot(path=str(ARTIFACTS / "classroom-viewer-stopped.png"))

            # the owner lets viewers run lessons; the viewer runs one, and a reload of the same
            # browser does not buy a second (the quota is per browser, by Streamlit's cookie)
            owner.locator('[data-testid="stSidebar"]').get_by_text("Classroom settings").click()
            owner.get_by_text("Viewers may run lesson studies").click()
            _settle(owner)
            viewer.goto(f"{url}/lessons?lesson=watch")
            run_lesson = viewer.get_by_role("button", name=re.compile("Run this lesson"))
            run_lesson.wait_for()
            _settle(viewer)
            assert run_lesson.is_enabled()
            run_lesson.click()
            viewer.wait_for_url(re.compile(r"study=study-"))
            viewer.reload()
            viewer.get_by_text("You already have 1 lesson study queued or training").first.wait_for()
            assert viewer.get_by_role("button", name=re.compile("Run this lesson")).is_disabled()
            viewer.screenshot(path=str(ARTIFACTS / "classroom-viewer-quota.png"))
            other_ctx = browser.new_context(viewport={"width": 1280, "height": 1400})  # another student
            other = other_ctx.new_page()
            other.set_default_timeout(SLOW)
            other.goto(f"{url}/lessons?lesson=watch")
            other.get_by_role("button", name=re.compile("Run this lesson")).wait_for()
            _settle(other)
            assert other.get_by_role("button", name=re.compile("Run this lesson")).is_enabled()
            other_ctx.close()
        finally:
            owner_ctx.close()
            viewer_ctx.close()


def test_eight_tabs_of_one_browser_clicking_run_this_lesson_at_once_start_one_study(browser, tmp_path):
    """The classroom's worst click: one student, the lesson open in eight tabs, "Run this lesson"
    pressed in all of them in the same few milliseconds (each tab's click is scheduled for one
    moment of the browser's clock). The quota allows that browser one study: one starts, and
    the seven other tabs say why not."""
    from mtl_core.store.store import RunStore
    from mtl_core.studies.store import StudyStore

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "classroom.json").write_text(json.dumps({"settings": {"viewer_lessons": True}, "studies": {}}))
    lessons = str(small_lesson(tmp_path / "lessons"))
    with serve(tmp_path, MTL_STUDIO_SHARED="1", MTL_STUDIO_OWNER_TOKEN=TOKEN, MTL_LESSONS_DIR=lessons) as url:
        student = browser.new_context(viewport={"width": 1280, "height": 1000})  # one browser: one cookie jar
        try:
            tabs = [student.new_page() for _ in range(8)]
            for tab in tabs:
                tab.set_default_timeout(SLOW)
                tab.goto(f"{url}/lessons?lesson=watch")
            for tab in tabs:
                tab.get_by_role("button", name=re.compile("Run this lesson")).wait_for()
                _settle(tab)
                assert tab.get_by_role("button", name=re.compile("Run this lesson")).is_enabled()
            at = tabs[0].evaluate("Date.now() + 1500")  # every tab clicks at this moment
            for tab in tabs:
                tab.evaluate("""at => {
                    const button = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Run this lesson'));
                    setTimeout(() => button.click(), Math.max(0, at - Date.now()));
                }""", at)
            started = [t for t in tabs if _started_or_refused(t) == "started"]
            refused = [t for t in tabs if t not in started]
            tabs[0].screenshot(path=str(ARTIFACTS / "classroom-eight-tabs.png"))
            assert len(started) == 1 and len(refused) == 7
            studies = StudyStore(RunStore(runs)).list()
            assert len(studies) == 1 and studies[0]["id"] in started[0].url
        finally:
            student.close()


def _started_or_refused(tab: Any) -> str:
    """What a tab shows once its click was answered: its study (the URL names it), or the quota's refusal."""
    refusal = tab.get_by_text("You already have 1 lesson study queued or training").first
    end = time.monotonic() + SLOW / 1000
    while time.monotonic() < end:
        if "study=study-" in tab.url:
            return "started"
        if refusal.is_visible():
            return "refused"
        tab.wait_for_timeout(200)
    raise AssertionError(f"the tab neither started a study nor was refused: {tab.url}")
