"""Process-wide objects for the dashboard, held with ``st.cache_resource``.

The RunManager lives here (one per process and runs directory), so runs survive a browser
refresh, a closed tab and a second tab: session state only remembers which run a person is
looking at.
"""
from __future__ import annotations

import os

import streamlit as st

from mtl_core.runs import RunManager, get_manager
from mtl_core.store import RUNS_DIR_ENV


def runs_dir() -> str:
    return os.environ.get(RUNS_DIR_ENV, "runs")


@st.cache_resource(show_spinner=False)
def _manager(path: str) -> RunManager:
    return get_manager(path)


def manager() -> RunManager:
    """The process-wide RunManager for this dashboard's runs directory."""
    return _manager(runs_dir())


def selected_run() -> str | None:
    """The run a person is looking at: ``?run=`` in the URL, else session state."""
    run = st.query_params.get("run") or st.session_state.get("run_id")
    return run or None


def select_run(run_id: str) -> None:
    st.session_state["run_id"] = run_id
    st.query_params["run"] = run_id
