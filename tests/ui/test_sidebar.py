"""The sidebar run picker the Live, Compare and Predict pages share."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from mtl_core.config import ExperimentConfig
from mtl_core.runs.manager import get_manager

SCRIPT = """
import streamlit as st
from ui.sidebar import run_picker
st.write(f"picked={run_picker(statuses=STATUSES)}")
"""


def picker_app(statuses=None) -> AppTest:
    return AppTest.from_string(SCRIPT.replace("STATUSES", repr(statuses)), default_timeout=30)


def make_runs(runs_dir) -> dict[str, str]:
    store = get_manager(runs_dir).store
    config = ExperimentConfig().to_dict()
    return {status: store.create_run(config, f"{status} run", status=status)
            for status in ("finished", "failed", "running")}  # created in this order: running is newest


def picked(at: AppTest) -> str:
    return at.markdown[0].value.removeprefix("picked=")


def test_no_runs_no_choice(runs_dir):
    at = picker_app().run()
    assert picked(at) == "None" and not at.sidebar.selectbox
    assert "No runs yet" in at.sidebar.caption[0].value


def test_runs_are_listed_newest_first_with_status_icons(runs_dir):
    ids = make_runs(runs_dir)
    at = picker_app().run()
    box = at.sidebar.selectbox[0]
    assert [o.split(" · ")[0] for o in box.options] == ["🟢 running run", "❌ failed run", "✅ finished run"]
    assert picked(at) == ids["running"]  # nothing selected yet: the newest


def test_a_status_filter_and_the_shared_selection(runs_dir):
    ids = make_runs(runs_dir)
    at = picker_app(statuses=("finished", "failed")).run()
    assert len(at.sidebar.selectbox[0].options) == 2 and picked(at) == ids["failed"]
    at.sidebar.selectbox[0].set_value(ids["finished"]).run()  # picking selects it for every page
    assert picked(at) == ids["finished"]
    assert at.session_state["run_id"] == ids["finished"] and at.query_params["run"] == ids["finished"]
    # a run selected elsewhere (a shared link's ?run=, Setup's Start) is what the picker shows
    at.query_params["run"] = ids["failed"]
    at.run()
    assert picked(at) == ids["failed"]
