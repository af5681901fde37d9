"""What a session sees of the engine: its manager (a viewer's is read-only; the RunManager itself
is :mod:`ui.engine`'s), and which run a person is looking at (session state and the URL)."""
from __future__ import annotations

import streamlit as st

from mtl_core.runs.manager import RunManager
from ui.engine import _manager, runs_dir
from ui.read_only import ViewerManager
from ui.roles import viewer


def _use_app_navigation() -> None:
    """Let app.py's ``st.navigation`` own the pages.

    Streamlit treats a ``pages/`` folder next to the entry point as an old-style multipage app
    until ``st.navigation`` has run once in the process; so the first visit to, say, ``/setup``
    after the server starts would run that page alone (no navigation, no wide layout), and keep
    doing so. Switch that off once, and rerun the visit through app.py.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import RerunData, get_script_run_ctx
    except ImportError:  # pragma: no cover - another Streamlit layout
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        ctx = get_script_run_ctx()
        if ctx is not None and ctx.script_requests is not None:
            # asked for, not raised as st.rerun() would: the page's first element reruns it. Raised here,
            # it would fail this import, and Python gives the sessions that wait for this module meanwhile
            # (a class opening the link at once) the half-made module: "cannot import name 'manager'"
            ctx.script_requests.request_rerun(RerunData(query_string=ctx.query_string,
                                                        page_script_hash=ctx.page_script_hash,
                                                        context_info=ctx.context_info))


_use_app_navigation()


@st.cache_resource(show_spinner=False)
def _viewer_manager(path: str) -> ViewerManager:
    return ViewerManager(_manager(path))  # one for every viewer: its store's read-only connections are per thread


def manager() -> RunManager:
    """The process-wide RunManager for this dashboard's runs directory; for a viewer of a shared
    dashboard, a :class:`ui.read_only.ViewerManager` of it (named reads only, a read-only store;
    a viewer starts a lesson's study through ``ui.roles.start_lesson``, nothing else)."""
    path = runs_dir()
    return _viewer_manager(path) if viewer() else _manager(path)  # type: ignore[return-value]


def selected_run() -> str | None:
    """The run a person is looking at: ``?run=`` in the URL, else session state."""
    run = st.query_params.get("run") or st.session_state.get("run_id")
    return run or None


def select_run(run_id: str) -> None:
    st.session_state["run_id"] = run_id
    st.query_params["run"] = run_id


LIVE_PAGE = "pages/live.py"


def open_run(run_id: str, page: str = LIVE_PAGE) -> None:
    """Select ``run_id`` and go to ``page`` (the live view by default)."""
    select_run(run_id)
    st.switch_page(page, query_params={"run": run_id})  # switching clears the URL's parameters otherwise
