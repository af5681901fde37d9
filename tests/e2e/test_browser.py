"""The dashboard in a real browser: Setup -> Start -> Live (curves grow without a reload) -> Predict.

Starts ``streamlit run app.py`` on a free port with an empty runs directory and drives headless
Chromium (Debian's, at /usr/bin/chromium) with Playwright, as a person would: set the widgets,
click Start, watch the live page, open Predict, upload a PNG. Screenshots of every stage go to
``test-artifacts/e2e/`` (git-ignored). Without Chromium or Playwright the test is skipped, except
under CI (``$CI`` set), where it fails so that it can never be skipped silently.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("MTL_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]
RUN_NAME = "e2e-browser"
TIME_LIMIT_S = 20  # the run trains this long whatever the machine's speed, so the live page can watch it grow
SLOW = 90_000  # ms: a first page visit imports torch on a busy 2-core machine
PROGRESS = re.compile(r"step ([\d,]+) / ([\d,]+)")


def _unavailable(reason: str) -> None:
    """Skip on a developer machine; fail under CI, where a skip would hide a broken dashboard."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this end-to-end test must run)")
    pytest.skip(reason)


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} did not answer 'ok' within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(tmp_path: Path, **env: str) -> Iterator[str]:
    """``http://127.0.0.1:<port>``: the dashboard on an empty runs directory (``env``: more
    environment, e.g. shared mode); killed (its whole process group, training threads included)
    on leaving."""
    port = free_port()
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "MTL_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "2", **env}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / f"streamlit{'-shared' if env.get('MTL_STUDIO_SHARED') else ''}.log")


@pytest.fixture
def server(tmp_path) -> Iterator[str]:
    """The dashboard as one person runs it on their own machine (see :func:`serve`)."""
    with serve(tmp_path) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Playwright). Requested before ``server``, so a machine without a
    browser skips before starting the dashboard."""
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A headless Chromium page (1280 x 1600, so a page's charts fit one screenshot)."""
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    pg = browser.new_page(viewport={"width": 1280, "height": 1600})
    pg.set_default_timeout(SLOW)
    yield pg
    pg.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextlib.contextmanager
def shot_on_failure(page: Any, name: str) -> Iterator[None]:
    """What the browser showed when the block went wrong, as ``<name>.png``; the error is raised as it was."""
    try:
        yield
    except BaseException:
        try:
            _shot(page, name)
        except Exception:  # a dead page: keep the original error
            pass
        raise


def _settle(page: Any, timeout: float = SLOW) -> None:
    """Wait for Streamlit's 'Running...' indicator to go away: the rerun a widget caused is done."""
    page.wait_for_timeout(150)  # the indicator appears a moment after the change is sent
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout)


def _set_number(page: Any, label: str, value: float) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    _settle(page)
    assert float(box.input_value()) == value, f"{label}: {box.input_value()!r} after typing {value}"


def _set_slider(page: Any, label: str, value: int) -> None:
    """Arrow keys on the focused slider, as a keyboard user would; one key press per step."""
    from playwright.sync_api import expect

    slider = page.locator(f'input[type="range"][aria-label="{label}"]')
    for _ in range(40):
        now = float(slider.input_value())
        if now == value:
            break
        slider.press("ArrowLeft" if now > value else "ArrowRight")
        _settle(page)
    expect(slider).to_have_value(str(value))


def _progress(page: Any) -> tuple[int, int]:
    """The live page's progress text: (step, total)."""
    text = page.locator('[data-testid="stProgress"]').first.inner_text()
    m = PROGRESS.search(text)
    assert m, f"no 'step N / M' in the progress text {text!r}"
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def _chart_points(page: Any) -> int:
    """Points drawn in the page's plotly charts, summed over every trace: read from plotly.js's
    ``_fullData``, where base64-encoded numpy arrays have been decoded (``data`` keeps
    ``{dtype, bdata}``)."""
    return page.evaluate("""() => {
        const plots = document.querySelectorAll('.js-plotly-plot');
        return Array.from(plots).reduce((n, el) => n + (el._fullData || []).reduce(
            (m, t) => m + (t.x ? t.x.length : 0), 0), 0);
    }""")


def _charts_grow(page: Any, what: str, seconds: float) -> None:
    """The page's charts draw points, then gain more within ``seconds`` (they redraw every few
    seconds while runs train), and the page never reloads itself meanwhile."""
    page.evaluate("() => { window.__e2e_no_reload = true; }")
    deadline = time.monotonic() + SLOW / 1000
    first = 0
    while time.monotonic() < deadline and first == 0:
        page.wait_for_timeout(500)
        first = _chart_points(page)
    assert first > 0, f"{what}: no curve drawn"
    later = first
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and later <= first:
        page.wait_for_timeout(1000)
        later = _chart_points(page)
    assert later > first, f"{what} gained no points: {first} -> {later}"
    assert page.evaluate("() => window.__e2e_no_reload === true"), f"the page reloaded itself while {what} grew"


def _png(path: Path) -> Path:
    """A 96 x 72 scene a person might upload: two coloured shapes on a grey, textured background."""
    from PIL import Image, ImageDraw

    img = Image.effect_noise((96, 72), 24).convert("RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 10, 40, 42), fill=(220, 40, 40))
    draw.rectangle((52, 24, 84, 60), fill=(40, 80, 220))
    img.save(path)
    return path


def test_setup_start_watch_live_then_predict(page, server, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=SLOW)  # not the default 5 s: every step here may wait on a busy server
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with shot_on_failure(page, "failure"):
        # -- Setup: a tiny run, set through the widgets ---------------------------------------
        page.goto(f"{server}/setup")
        expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=SLOW)
        start = page.get_by_role("button", name=re.compile("Start training"))
        expect(start).to_be_visible(timeout=SLOW)
        _settle(page)
        _set_slider(page, "Image size (px)", 32)
        for label, value in (("Training samples", 64), ("Validation samples", 16), ("Test samples", 16),
                             ("Batch size", 16), ("Training steps", 5000)):
            _set_number(page, label, value)
        page.get_by_text("More settings").click()
        for label, value in (("Warm-up steps", 0), ("Time limit (seconds, 0 = none)", TIME_LIMIT_S),
                             ("Checkpoint every (steps, 0 = off)", 0)):
            _set_number(page, label, value)
        run_name = page.get_by_label("Run name", exact=True)
        run_name.fill(RUN_NAME)
        run_name.press("Enter")
        _settle(page)
        _shot(page, "1_setup")
        expect(start).to_be_enabled()
        start.click()
        clicked = time.monotonic()

        # -- Live: the run appears, its curves grow with no page reload, then it finishes --------
        expect(page.get_by_role("heading", name="Live training", exact=True)).to_be_visible(timeout=SLOW)
        expect(page.get_by_text(RUN_NAME).first).to_be_visible(timeout=SLOW)
        page.evaluate("() => { window.__e2e_no_reload = true; }")  # gone if the page reloads
        deadline = time.monotonic() + SLOW / 1000
        first = None
        while time.monotonic() < deadline:  # the first read once some steps are drawn
            if page.locator('[data-testid="stProgress"]').count() and _chart_points(page) > 0:
                first = (_progress(page)[0], _chart_points(page))
                break
            page.wait_for_timeout(250)
        assert first is not None, "the live page drew no training curve"
        first_at = time.monotonic() - clicked
        # a person zooms into the total-loss chart: the refreshes must redraw that same chart in
        # place and keep the zoom (a chart rebuilt at every refresh would lose it)
        charts_at_first = page.evaluate("""() => {
            const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
            plots.forEach((el) => { el.__e2e_first = true; });
            window.Plotly.relayout(plots[0], {'xaxis.range': [0, 1.5]});
            return plots.length;
        }""")
        _shot(page, "2_live_running")
        second = first
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (second[0] > first[0] and second[1] > first[1]):
            page.wait_for_timeout(1000)  # the status redraws every second, the charts every few seconds
            second = (_progress(page)[0], _chart_points(page))
        late = f"(first read {first_at:.0f} s after Start; a run that ended before it cannot grow: raise TIME_LIMIT_S)"
        assert second[0] > first[0], f"the progress step did not advance: {first[0]} -> {second[0]} {late}"
        assert second[1] > first[1], f"the charts gained no points: {first[1]} -> {second[1]} {late}"
        kept, zoom = page.evaluate("""() => {
            const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
            return [plots.filter((el) => el.__e2e_first).length, plots[0].layout.xaxis.range];
        }""")
        assert kept == charts_at_first, f"{charts_at_first - kept} of {charts_at_first} charts were rebuilt, not redrawn"
        assert zoom == [0, 1.5], f"the zoom into the total loss was lost at a refresh: x range {zoom}"
        _shot(page, "3_live_later")
        assert page.evaluate("() => window.__e2e_no_reload === true"), "the live page reloaded itself"
        expect(page.get_by_text("Final metrics")).to_be_visible(timeout=SLOW + TIME_LIMIT_S * 1000)
        expect(page.get_by_text("finished").first).to_be_visible()
        _settle(page)  # the page reruns once when the run ends (to stop polling)
        expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
        _shot(page, "4_live_finished")

        # -- Predict: choose the run, upload a PNG, see the overlay --------------------------------
        page.get_by_role("link", name="Predict").click()
        expect(page.get_by_role("heading", name="Predict", exact=True)).to_be_visible(timeout=SLOW)
        picker = page.get_by_label(re.compile("^Run"))
        picker.click()
        page.get_by_role("option", name=re.compile(RUN_NAME)).click()
        expect(page.get_by_text(re.compile(r"Model: .*" + RUN_NAME))).to_be_visible(timeout=SLOW)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(_png(tmp_path / "scene.png")))
        expect(page.get_by_text(re.compile(r"96×72 px · inference \d+ ms"))).to_be_visible(timeout=SLOW)
        overlay = page.locator('[data-testid="stImage"] img').first
        expect(overlay).to_be_visible()
        w, h = page.evaluate("(img) => [img.naturalWidth, img.naturalHeight]", overlay.element_handle())
        # enlarged by a whole factor, with a band above it for the labels of the whole image
        band = h - w * 72 // 96
        assert w > 0 and w % 96 == 0 and 0 < band < 60, f"the overlay is {w}x{h}; the upload was 96x72"
        expect(page.get_by_text(re.compile(r"^Classification: \w+ \(\d+%\)"))).to_be_visible()  # the model's answer
        _settle(page)
        _shot(page, "5_predict")
        assert not errors, f"JavaScript errors in the page: {errors}"


def test_a_study_started_from_setup_shows_its_banded_curves_growing(page, server):
    """Setup's "Start as a study" (quick preset, two methods, one seed, no baselines) opens the
    Studies page, whose banded curves gain points while the runs train, with no reload; Stop
    stops the study."""
    from playwright.sync_api import expect

    expect.set_options(timeout=SLOW)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with shot_on_failure(page, "study_failure"):
        page.goto(f"{server}/setup")
        expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=SLOW)
        _settle(page)
        page.get_by_text("Start as a study").click()
        section = page.locator('[data-testid="stExpander"]').filter(has_text="Start as a study")
        methods = section.get_by_role("combobox").first
        expect(methods).to_be_visible()
        page.wait_for_timeout(500)  # the expander's opening animation
        for method in ("ew", "uw"):
            option = page.get_by_role("option", name=re.compile(rf"^{method} \("))
            chip = section.locator("[data-tag]").filter(has_text=re.compile(rf"^{method} \("))  # Streamlit 1.67's tags
            for _ in range(3):  # a click during a rerun may be lost (menu not opened, option not taken): again
                methods.click()
                if methods.get_attribute("aria-expanded") != "true":
                    methods.press("ArrowDown")  # a first click may only focus the box
                try:
                    option.wait_for(state="visible", timeout=3000)
                    option.click()
                    _settle(page)
                    chip.wait_for(state="visible", timeout=5000)
                    break
                except Exception:
                    page.keyboard.press("Escape")
                    _settle(page)
            expect(chip).to_be_visible()
            page.keyboard.press("Escape")
            _settle(page)
        expect(section.get_by_text("2 methods x 3 seeds")).to_be_visible()
        _set_number(page, "Seeds", 1)
        section.get_by_text("Single-task baselines").click()
        _settle(page)
        section.get_by_text("Quick (32 px").click()
        _settle(page)
        name = page.get_by_label("Study name", exact=True)
        name.fill("e2e study")
        name.press("Enter")
        _settle(page)
        expect(section.get_by_text("2 methods x 1 seed = 2 runs")).to_be_visible()
        expect(section.get_by_text(re.compile(r"32 px · 600 steps"))).to_be_visible()
        _shot(page, "study_1_setup")
        section.get_by_role("button", name=re.compile("Start study")).click()

        expect(page.get_by_role("heading", name="Studies", exact=True)).to_be_visible(timeout=SLOW)
        expect(page.get_by_text("e2e study").first).to_be_visible()
        expect(page.get_by_text("band: ± 1 std over seeds", exact=False)).to_be_visible()
        _charts_grow(page, "the Studies page's banded curves", 30)
        _shot(page, "study_2_training")
        page.get_by_role("button", name=re.compile("Stop")).click()
        expect(page.get_by_text("stopped").first).to_be_visible(timeout=SLOW)
        _settle(page)
        _shot(page, "study_3_stopped")
        assert not errors, f"JavaScript errors in the page: {errors}"


def small_lesson(d: Path) -> Path:
    """A folder ``d`` holding one small lesson, "watch", whose runs train long enough to watch."""
    import json

    d.mkdir(parents=True, exist_ok=True)
    lesson = {
        "id": "watch", "order": 1, "title": "Watch it learn",
        "text": " ".join(["Segmentation learnt with classification against segmentation alone."] * 8),
        "paper": {"title": "Caruana, Multitask Learning, 1997", "url": "https://doi.org/10.1023/A:1007379606734"},
        "study": {"base": {"tasks": ["classification", "segmentation"],
                           "data": {"image_size": 32, "val_size": 32, "test_size": 32},
                           "optim": {"steps": 2000, "batch_size": 16, "warmup_steps": 0},
                           "eval_every": 10, "checkpoint_every": 0, "gradstats_every": 10},
                  "seeds": 2, "baselines": ["segmentation"]},
        "charts": [{"kind": "curves", "task": "segmentation"}, {"kind": "effect"}],
        "effect": {"task": "segmentation", "a": {}, "b": "baseline", "sign": "+", "text": "segmentation mIoU, MTL - STL"},
        "knobs": [{"path": "data.label_fraction.segmentation", "label": "Share of images with segmentation labels",
                   "min": 0.05, "max": 1.0, "step": 0.05}],
        "try_next": [{"id": "wide", "label": "Wider", "why": "More channels.", "base": {"model": {"width": 24}}}]}
    (d / "1_watch.json").write_text(json.dumps(lesson))
    return d


@pytest.fixture
def lesson_link(tmp_path, monkeypatch) -> str:
    """The small lesson (set before the server starts, which reads it): the link's path and query,
    with one control moved."""
    from mtl_core.config import to_link

    monkeypatch.setenv("MTL_LESSONS_DIR", str(small_lesson(tmp_path / "lessons")))
    return "/lessons?lesson=watch&knobs=" + to_link({"data.label_fraction.segmentation": 0.25})


def test_a_lesson_link_opens_the_lesson_and_its_chart_grows_when_started(page, lesson_link, server):
    """A shared lesson link opens that lesson with the link's control value; Run trains its study and
    the lesson's chart gains points while it trains, with no reload."""
    from playwright.sync_api import expect

    expect.set_options(timeout=SLOW)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with shot_on_failure(page, "lesson_failure"):
        page.goto(server + lesson_link)
        expect(page.get_by_role("heading", name="1. Watch it learn")).to_be_visible(timeout=SLOW)
        _settle(page)
        slider = page.locator('input[type="range"][aria-label="Share of images with segmentation labels"]')
        expect(slider).to_have_value("0.25")
        _shot(page, "lesson_1_opened")
        page.get_by_role("button", name=re.compile("Run this lesson")).click()
        expect(page.get_by_text("What the runs show")).to_be_visible(timeout=SLOW)
        assert "study=" in page.url and "knobs=" in page.url  # the link now names the study too
        _charts_grow(page, "the lesson's chart", 40)
        _shot(page, "lesson_2_training")
        assert not errors, f"JavaScript errors in the page: {errors}"


@pytest.fixture
def trained_run(tmp_path) -> dict:
    """A tiny finished run with four tasks in the runs directory the ``server`` fixture serves
    (requested before it): ``{"dir", "checkpoint"}``."""
    import dataclasses

    from mtl_core.cli import main
    from mtl_core.store.store import RunStore
    from tests.conftest import tiny_config

    base = tiny_config()
    cfg = tiny_config(name="e2e-inspect", tasks=("classification", "detection", "segmentation", "depth"),
                      optim=dataclasses.replace(base.optim, steps=5))
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    runs = tmp_path / "runs"
    assert main(["train", "--runs-dir", str(runs), "--config", str(path), "--quiet"]) == 0
    store = RunStore(runs)
    run = store.list_runs()[0]
    return {"dir": runs, "checkpoint": store.latest_checkpoint(run["id"], "final")["path"]}


def test_the_error_browser_filters_then_opens_a_sample_with_its_error_overlay(page, trained_run, server):
    """Inspect: filter the error browser to the samples whose detection missed an object, see as
    many as the error table says, open the first and see its errors drawn and listed."""
    from playwright.sync_api import expect

    from mtl_core.inspection.outputs import split_outputs
    from mtl_core.inspection.table import Condition, error_table, filter_rows

    expect.set_options(timeout=SLOW)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with shot_on_failure(page, "inspect_failure"):
        page.goto(f"{server}/inspect")
        expect(page.get_by_role("heading", name="Inspect")).to_be_visible()
        expect(page.get_by_role("button", name="Open", exact=True).first).to_be_visible()
        expect(page.get_by_text("32 of 32 samples", exact=False)).to_be_visible()
        _shot(page, "inspect_1_browser")
        page.get_by_text("Filter and sort").click()
        _set_number(page, "missed objects at least", 1)
        table = error_table(split_outputs(trained_run["checkpoint"], "val"))  # the file the page wrote
        wanted = len(filter_rows(table, [Condition("detection/misses", ">=", 1)]))
        assert 0 < wanted <= 32
        expect(page.get_by_text(f"{wanted} of 32 samples with Detection: missed objects ≥ 1", exact=False)).to_be_visible()
        opens = page.locator('[class*="st-key-inspect_grid_open_"] button')
        expect(opens).to_have_count(min(wanted, 18))
        _shot(page, "inspect_2_filtered")
        opens.first.click()
        _settle(page)
        errors_image = page.locator('[data-testid="stImage"]').filter(has_text="Errors").locator("img")
        expect(errors_image).to_be_visible()
        assert page.evaluate("(img) => img.naturalWidth", errors_image.element_handle()) >= 256  # enlarged
        expect(page.get_by_text("✗ Detection: missed objects", exact=False)).to_be_visible()
        expect(page.get_by_text("missed", exact=True).first).to_be_visible()  # the error colours' legend
        _shot(page, "inspect_3_sample")

        # a click on a confusion matrix cell lists the samples in it
        matrix = split_outputs(trained_run["checkpoint"], "val").confusions("classification")[0]
        r, c = max(((r, c) for r in range(len(matrix.rows)) for c in range(len(matrix.cols)) if (r, c) != (0, 0)),
                   key=lambda rc: matrix.counts[rc[0]][rc[1]])  # not the cell the selectors start on
        page.get_by_text("Confusion matrices", exact=True).click()
        _settle(page)
        chart = page.locator('[class*="st-key-inspect_cm_chart_classification"] .js-plotly-plot')
        expect(chart).to_be_visible()
        page.wait_for_timeout(1000)  # plotly lays the chart out after it appears
        x, y = page.evaluate("""([el, r, c]) => { const L = el._fullLayout, box = el.getBoundingClientRect();
            return [box.left + L.xaxis._offset + L.xaxis.l2p(c), box.top + L.yaxis._offset + L.yaxis.l2p(r)]; }""",
                             [chart.element_handle(), r, c])
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        _settle(page)
        expect(page.get_by_text(f"{matrix.counts[r][c]} samples with truth {matrix.rows[r]} and prediction "
                                f"{matrix.cols[c]}", exact=False)).to_be_visible()
        expect(page.locator('[class*="st-key-inspect_cell_open_"] button')).to_have_count(min(12, matrix.counts[r][c]))
        _shot(page, "inspect_4_confusion_cell")
        assert not errors, f"JavaScript errors in the page: {errors}"


EXAMPLE_TABLE = ROOT / "assets" / "labels" / "photos.csv"


def test_a_label_table_trains_from_setup_and_one_of_its_photos_gets_its_answers(page, server):
    """The README's worked example through the browser: Setup's example label table (photos of
    three tasks of three kinds), a short run at 48 x 64, then one of its test photos on Predict."""
    from playwright.sync_api import expect

    expect.set_options(timeout=SLOW)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    name = "e2e-label-table"
    with shot_on_failure(page, "failure_table"):
        page.goto(f"{server}/setup")
        expect(page.get_by_role("heading", name="Setup", exact=True)).to_be_visible(timeout=SLOW)
        _settle(page)
        page.get_by_label("Dataset", exact=True).click()
        page.get_by_role("option", name="manifest", exact=True).click()
        _settle(page)
        page.get_by_role("button", name=re.compile("^Example")).click()
        _settle(page)
        expect(page.get_by_text("The table's 3 task columns")).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
        for chip in ("Subject", "Outdoor", "Brightness"):  # every column chosen
            expect(page.locator("[data-tag]").filter(has_text=re.compile(f"^{chip}")).first).to_be_visible()
        _set_slider(page, "Image height (px)", 48)
        _set_slider(page, "Image width (px)", 64)
        for label, value in (("Batch size", 16), ("Training steps", 40)):
            _set_number(page, label, value)
        run_name = page.get_by_label("Run name", exact=True)
        run_name.fill(name)
        run_name.press("Enter")
        _settle(page)
        _shot(page, "table_1_setup")
        start = page.get_by_role("button", name=re.compile("Start training"))
        expect(start).to_be_enabled()
        start.click()
        expect(page.get_by_role("heading", name="Live training", exact=True)).to_be_visible(timeout=SLOW)
        expect(page.get_by_text("Final metrics")).to_be_visible(timeout=4 * SLOW)
        _settle(page)
        _shot(page, "table_2_finished")

        page.get_by_role("link", name="Predict").click()
        expect(page.get_by_role("heading", name="Predict", exact=True)).to_be_visible(timeout=SLOW)
        page.get_by_label(re.compile("^Run")).click()
        page.get_by_role("option", name=re.compile(name)).click()
        expect(page.get_by_text(re.compile(r"Model: .*" + name))).to_be_visible(timeout=SLOW)
        photo = EXAMPLE_TABLE.parent / "photos" / "cat_18.jpg"  # a test-split photo of the table
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
        expect(page.get_by_text(re.compile(r"128×96 px · inference \d+ ms"))).to_be_visible(timeout=SLOW)
        for words in (r"Subject: \w+ \(\d+%\)", r"Outdoor: (yes|no) \(\d+%\)", r"Brightness: [\d.]+"):
            expect(page.get_by_text(re.compile(words)).first).to_be_visible()
        _settle(page)
        _shot(page, "table_3_predict")
        assert not errors, f"JavaScript errors in the page: {errors}"
