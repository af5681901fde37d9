"""The Home page: what the tool is, the one-click demo, the recent runs."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from mtl_core.config import DEFAULT_TASKS, ExperimentConfig
from mtl_core.runs.manager import get_manager

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_home_says_what_the_tool_does_and_lists_runs_newest_first(runs_dir):
    store = get_manager(runs_dir).store
    older = store.create_run(ExperimentConfig(tasks=("depth",)).to_dict(), "older run", total_steps=10,
                             status="finished")
    newer = store.create_run(ExperimentConfig(weighting=ExperimentConfig().weighting).to_dict(), "newer run",
                             total_steps=10, status="failed")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "MTL Studio"
    assert "several vision tasks at once" in at.markdown[0].value
    table = at.dataframe[0].value
    assert list(table["id"]) == [newer, older]
    assert list(table["status"]) == ["❌ failed", "✅ finished"]
    assert list(table["tasks"]) == ["classification, detection, segmentation", "depth"]


def test_home_with_no_runs_says_so(runs_dir):
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.dataframe
    assert any("No runs yet" in i.value for i in at.info)


def test_the_demo_button_starts_a_three_task_run_and_selects_it(runs_dir):
    manager = get_manager(runs_dir)  # the same one the dashboard holds
    manager.max_concurrent = 0  # keep the demo queued: the test checks what starts, not 1000 steps of training
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.button(key="home.demo").click().run()
    runs = manager.store.list_runs()
    assert len(runs) == 1
    run_id = runs[0]["id"]
    try:
        assert runs[0]["status"] == "queued" and runs[0]["name"].startswith("Demo")
        assert at.session_state["run_id"] == run_id and at.query_params["run"] == run_id
        if (Path(APP).parent / "pages" / "live.py").is_file():  # the live view is written alongside
            assert not [b for b in at.button if b.key == "home.demo"], "still on Home, not on the live view"
        config = ExperimentConfig.from_dict(runs[0]["config"])
        assert config.tasks == DEFAULT_TASKS and config.data.dataset == "scenes"
        assert config.optim == ExperimentConfig().optim  # the default experiment, only named
    finally:
        manager.stop(run_id)
        assert manager.wait(run_id, timeout=60) == "stopped"


def test_app_navigation_owns_the_pages_folder():
    """Streamlit runs a pages/ folder as an old-style multipage app (each page alone, without
    app.py's navigation and layout) until st.navigation has run once; ui.state switches that off."""
    from streamlit.runtime.pages_manager import PagesManager

    from ui import state

    saved = PagesManager.uses_pages_directory
    PagesManager.uses_pages_directory = True  # a fresh server next to a pages/ folder
    try:
        state._use_app_navigation()
        assert PagesManager.uses_pages_directory is False
    finally:
        PagesManager.uses_pages_directory = saved
