"""The engine behind the dashboard: one RunManager per process and runs directory, held with
``st.cache_resource``, so runs survive a browser refresh, a closed tab and a second tab. Who may
use it how (an owner, a viewer) is :mod:`ui.state`'s and :mod:`ui.roles`' business, above this."""
from __future__ import annotations

import threading

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.runs.manager import RunManager, get_manager, preload
from mtl_core.store.ids import default_runs_dir


def runs_dir() -> str:
    """This dashboard's runs directory (``$MTL_RUNS_DIR``, else ``./runs``)."""
    return str(default_runs_dir())


@st.cache_resource(show_spinner=False)
def _cached_manager(path: str) -> RunManager:
    # the engine's imports in the background while the person reads the first page, so that
    # "Start a demo run" trains at once (its first curve points within 5 s: bench/demo_start.py)
    threading.Thread(target=preload, name="mtl-preload", daemon=True).start()
    return get_manager(path)


def _manager(path: str) -> RunManager:
    """The cached RunManager; where its store cannot be opened (a PostgreSQL server that does not
    answer, a runs directory from a newer MTL Studio) the page says why and stops, and the next
    rerun tries again (a failure is not cached)."""
    try:
        return _cached_manager(path)
    except MTLError as e:
        st.error(f"**The run store cannot be opened.** {e}", icon="🛑")
        st.stop()
        raise  # st.stop() raises; for type checkers


def engine() -> RunManager:
    """The RunManager itself, whoever asks. Pages get theirs from :func:`ui.state.manager` (a
    viewer's is read-only); this one is for the few starts a viewer may make within the
    classroom's quota (``ui.roles.start_lesson``) and for the owner."""
    return _manager(runs_dir())
