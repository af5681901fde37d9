"""The Gradient playground in a real browser: the paths draw, a slider moves, the paths change.

Headless Chromium on the dashboard (see test_browser.py): open a link to the playground on CAGrad's
toy as the fresh server's first request (the app's navigation, not a list of files),
read the methods' paths from plotly.js, press the step-size slider's arrow key as a keyboard user
would, and see every method's paths redrawn elsewhere and the link follow. Screenshots go to
``test-artifacts/e2e/``.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_browser import SLOW, _settle, _shot, serve, shot_on_failure

pytestmark = pytest.mark.slow
METHODS = ("ew", "mgda", "pcgrad", "cagrad")


def _paths(page: Any) -> dict[str, list]:
    """Each method's path in parameter space, as plotly.js drew it (x then y, starts separated by nulls)."""
    return page.evaluate("""(names) => {
        const plot = document.querySelector('.js-plotly-plot');
        const out = {};
        for (const t of (plot && plot._fullData) || []) {
            if (names.includes(t.name) && t.mode === 'lines' && t.xaxis === 'x' && !(t.name in out))
                out[t.name] = Array.from(t.x).concat(Array.from(t.y));
        }
        return out;
    }""", list(METHODS))


def test_moving_the_step_size_slider_redraws_every_path(browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    page.set_default_timeout(SLOW)
    with serve(tmp_path) as server, shot_on_failure(page, "playground_failure"):
        # a shared link, the fresh server's very first request: still the app's navigation (its
        # titles), not Streamlit's list of the files in pages/ (ui/entry.py)
        page.goto(f"{server}/playground?problem=cagrad_toy&steps=300")
        expect(page.get_by_text("Nearest the average optimum")).to_be_visible(timeout=SLOW)
        nav = page.locator('[data-testid="stSidebarNav"]')
        expect(nav.get_by_text("Gradient playground", exact=True)).to_be_visible()
        expect(nav.get_by_text("Compare runs", exact=True)).to_be_visible()
        assert "problem=cagrad_toy" in page.url
        page.wait_for_function("() => ((document.querySelector('.js-plotly-plot') || {})._fullData || [])"
                               ".some(t => (t.name || '').startsWith('step '))", timeout=SLOW)
        before = _paths(page)
        assert set(before) == set(METHODS) and all(len(v) > 20 for v in before.values()), before.keys()
        _shot(page, "playground_before")

        slider = page.get_by_role("slider", name="Step size")
        slider.focus()
        slider.press("ArrowLeft")  # 0.1 -> 0.05
        _settle(page)
        expect(page.get_by_text("Nearest the average optimum")).to_be_visible(timeout=SLOW)
        # the finished figure (it marks the step whose arrows it draws), with the new paths
        page.wait_for_function("(old) => { const p = document.querySelector('.js-plotly-plot');"
                               " const d = (p && p._fullData) || [];"
                               " return d.some(t => (t.name || '').startsWith('step ')) && d.some(t => t.name === 'ew'"
                               " && t.mode === 'lines' && Array.from(t.x).concat(Array.from(t.y)).join() !== old); }",
                               arg=",".join(map(str, before["ew"])), timeout=SLOW)
        after = _paths(page)
        assert set(after) == set(METHODS)
        for m in METHODS:  # every method's paths moved: a smaller step goes less far in 300 steps
            assert after[m] != before[m], m
        assert "lr=0.05" in page.url
        _shot(page, "playground_after")
    page.close()
