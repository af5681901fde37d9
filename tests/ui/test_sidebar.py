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


def test_long_study_names_keep_the_level_and_the_seed_that_tell_runs_apart():
    from ui.sidebar import LABEL_CHARS, short_name

    seeds = [short_name(f"fusion on scenes · segmentation alone · seed {s}") for s in range(3)]
    assert len(set(seeds)) == 3 and all(len(x) <= LABEL_CHARS for x in seeds)
    assert seeds[0] == "fusion on… · segmentation alone · seed 0"
    levels = [short_name(f"a very long study title indeed · weighting.method={m}, model.width=16 · seed 2")
              for m in ("ew", "famo")]
    assert len(set(levels)) == 2 and all(x.endswith(" · seed 2") and len(x) <= LABEL_CHARS for x in levels)
    swapped = [short_name(f"a very long study title indeed · model.width=16, weighting.method={m} · seed 2")
               for m in ("ew", "famo")]
    assert len(set(swapped)) == 2, swapped  # the factor that differs is at the level's end: kept
    assert short_name("demo") == "demo" and short_name("x" * 50) == "x" * 39 + "…"
