"""Every page runs through ``app.py``'s navigation, even from a link opened first.

Streamlit remembers, for the whole server, whether the app uses its ``pages/`` folder (its old
multipage mode, where each file is a page of its own) until ``st.navigation`` is first called. A
fresh server whose very first request is a link to a page (a lesson or playground link a teacher
shared) ran that page's file alone, without ``app.py``: the sidebar listed the files
("playground", "setup", ...) instead of the app's navigation, without the page config or the
classroom sidebar, for every session until someone opened the home page. :func:`through_app`,
the first call of every page, ends such a run and reruns it through ``app.py``; ``app.py`` calls
:func:`app_ran`.
"""
from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

_APP_RAN = "_entry_app_ran"


def app_ran() -> None:
    """Called by ``app.py`` on every run: this session has the app's navigation."""
    st.session_state[_APP_RAN] = True


def through_app() -> None:
    """If the server is still in the pages-folder mode, leave it; and if this session has never
    run ``app.py`` (a link opened first), rerun through it. A session that has run it is not
    rerun: a rerun would drop the click that started this run (Streamlit's ``AppTest`` starts every
    run in that mode)."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what app.py's st.navigation would have set
        if not st.session_state.get(_APP_RAN):
            st.rerun()
