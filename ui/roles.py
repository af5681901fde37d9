"""Shared (classroom) mode in the dashboard: who this browser session is, the sidebar that says so,
and the guard every control calls. The policy itself is :mod:`ui.access`.

The owner unlocks control once per browser session: the owner's link (``/?owner=<secret>``, taken
out of the address bar at once, so a screen shared with the class does not show it), the secret
typed into the sidebar, or Streamlit's ``st.login`` with an e-mail listed in ``MTL_STUDIO_OWNERS``
where an identity provider is configured (``[auth]`` in ``.streamlit/secrets.toml``).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from mtl_core.studies.runner import StudyRunner
from ui.access import (
    MIN_TOKEN_CHARS,
    OWNER,
    SHARED_UPLOAD_MB,
    TOKEN_ENV,
    TOKEN_PARAM,
    VIEWER,
    XSRF_COOKIE,
    Classroom,
    Decision,
    browser_key,
    owner_emails,
    owner_token,
    shared_mode,
    token_matches,
)
from ui.engine import engine, runs_dir
from ui.lesson_start import start_lesson_study
from ui.predictions import Predictions

LOG = logging.getLogger(__name__)
ROLE_KEY = "access_role"  # set by this module only (no widget has this key, so a browser cannot set it)
NOTE_KEY = "access_note"
CLASSROOM_FILE = "classroom.json"  # the owner's settings and the viewers' studies, beside the run store
MAX_ATTEMPTS = 5  # wrong secrets per browser session before the sidebar stops asking


@st.cache_resource(show_spinner=False)
def _classroom(token_env: str, owners_env: str, runs: str) -> Classroom:
    secret, made = owner_token({TOKEN_ENV: token_env})
    if made:  # as Jupyter does: the secret goes to the console of the person who started the server
        print(f"MTL Studio shared mode: no {TOKEN_ENV} set; this server's owner link is "
              f"http://<this host>:<port>/?{TOKEN_PARAM}={secret}", file=sys.stderr, flush=True)
    elif len(secret) < MIN_TOKEN_CHARS:
        print(f"MTL Studio shared mode: {TOKEN_ENV} is {len(secret)} characters, short enough to guess; use "
              f"{MIN_TOKEN_CHARS} or more (python -c 'import secrets; print(secrets.token_urlsafe(18))')",
              file=sys.stderr, flush=True)
    return Classroom.load(secret, owner_emails({"MTL_STUDIO_OWNERS": owners_env}), Path(runs) / CLASSROOM_FILE)


def classroom() -> Classroom:
    """The process-wide classroom state (made once per secret, owner list and runs directory)."""
    return _classroom(os.environ.get(TOKEN_ENV, ""), os.environ.get("MTL_STUDIO_OWNERS", ""), runs_dir())


def browser_id() -> str:
    """The unit of a viewer's quota: this browser (:func:`ui.access.browser_key` of its XSRF cookie,
    the same across reloads and tabs), else this browser session's id (no cookie: XSRF protection
    off, or a test's AppTest)."""
    try:
        key = browser_key(st.context.cookies.get(XSRF_COOKIE, ""))
    except Exception:  # no request context
        key = None
    if key:
        return key
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return getattr(ctx, "session_id", "") or "no-session"


def _signed_in_email() -> str:
    try:
        user = st.user
        return str(user.get("email") or "").lower() if user.get("is_logged_in") else ""
    except Exception:  # no identity provider configured, or a Streamlit without st.user
        return ""


def login_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml
        return False


def unlock(secret: str | None) -> bool:
    """Become the owner for this session if ``secret`` is the owner's; counts wrong tries."""
    ss = st.session_state
    if token_matches(secret, classroom().secret):
        ss[ROLE_KEY] = OWNER
        ss[NOTE_KEY] = "You control this dashboard now (for this browser session)."
        return True
    ss["access_attempts"] = ss.get("access_attempts", 0) + 1
    left = max(0, MAX_ATTEMPTS - ss["access_attempts"])
    ss[NOTE_KEY] = f"That is not the owner's secret: you are still a viewer ({left} tries left in this browser session)."
    return False


def role() -> str:
    """``owner`` or ``viewer``. Outside shared mode everyone is the owner, as on one's own machine."""
    if not shared_mode():
        return OWNER
    ss = st.session_state
    given = st.query_params.get(TOKEN_PARAM)
    if given is not None:  # the owner's link: read once, then out of the URL
        del st.query_params[TOKEN_PARAM]
        if ss.get(ROLE_KEY) != OWNER:
            unlock(given)
    if ss.get(ROLE_KEY) == OWNER:
        return OWNER
    owners = classroom().owners
    if owners and login_configured():  # st.user parses secrets.toml: only where owners sign in that way
        email = _signed_in_email()
        if email and email in owners:
            return OWNER
    return VIEWER


def viewer() -> bool:
    """Whether this session is a viewer of a shared dashboard."""
    return shared_mode() and role() == VIEWER


def can(action: str) -> Decision:
    """Whether this session may take ``action`` (one of :data:`ui.access.CONTROLS`)."""
    if not shared_mode():
        return Decision(True)
    return classroom().decide(action, role())


def why_not(action: str) -> str | None:
    """A button's help text: ``None`` when allowed, else why not (with ``disabled=``)."""
    d = can(action)
    return None if d.allowed else d.reason


def refused(action: str, show: bool = True) -> str | None:
    """The server-side check before an action runs (a disabled button is only the browser's
    word): ``None`` when allowed; else the reason, shown as an error when ``show``."""
    d = can(action)
    if d.allowed:
        return None
    LOG.info("refused %s for a viewer session", action)
    if show:
        st.error(d.reason, icon=":material/lock:")
    return d.reason


def lesson_refusal(runs: int, queued: int, active) -> str | None:
    """Why this session may not start a lesson study of ``runs`` runs now, or ``None``."""
    if not shared_mode():
        return None
    d = classroom().may_start_lesson(role(), browser_id(), runs, queued, active)
    return None if d.allowed else d.reason


def start_lesson(spec: Any) -> str:
    """Start a lesson's study (a ``StudySpec``) for this session; returns the study's id. A
    viewer's is checked against the classroom's quota and takes its place in it in one step
    (:class:`ui.access.AccessError` says which limit was reached); the owner's starts at once."""
    manager = engine()  # the RunManager itself: a lesson's study is the one start a viewer may make
    if not shared_mode():
        return StudyRunner(manager).start(spec)
    return start_lesson_study(classroom(), manager, spec, role(), browser_id())


@contextmanager
def inspect_build(what: str) -> Iterator[None]:
    """Around computing Inspect outputs that nobody computed yet: nothing to hold for the owner;
    for a viewer, the owner's leave and a free place among the class's (else AccessError)."""
    if not shared_mode():
        yield
        return
    with classroom().inspect_build(role(), what):
        yield


def upload_limit_mb() -> int | None:
    """Each upload's limit in MB: :data:`ui.access.SHARED_UPLOAD_MB` on a shared dashboard, for
    every uploader alike; ``None`` (the server's own limit) otherwise."""
    return SHARED_UPLOAD_MB if shared_mode() else None


def view_only_caption(what: str) -> None:
    """One line over controls a viewer sees disabled."""
    if shared_mode() and role() == VIEWER:
        st.caption(f":material/lock: View only: the dashboard's owner {what}.")


# ------------------------------------------------------------------ the sidebar
SETTING_WIDGETS = {  # setting -> (label, lowest, highest, help)
    "per_session": ("Lesson studies per viewer at a time", 1, 5, "Queued or training; a finished one frees its place."),
    "max_viewer_studies": ("Lesson studies of all viewers at a time", 1, 50, "However many browsers are open."),
    "max_queued_runs": ("Runs in the queue at most, for a viewer's study", 1, 500,
                        "A viewer's study is refused when the training queue would hold more runs than this."),
}
INSPECT_WIDGETS = {
    "max_inspect_builds": ("Inspect computations of all viewers at a time", 1, 8,
                           "Each takes the server about 13 s per run and split; others are asked to wait."),
}


def _set(setting: str) -> None:
    if refused("classroom.settings", show=False) is None:
        classroom().update(**{setting: st.session_state[f"access_{setting}"]})


def _try_unlock() -> None:
    unlock(st.session_state.get("access_secret", ""))
    st.session_state["access_secret"] = ""  # never left in the page


def _lock() -> None:
    st.session_state.pop(ROLE_KEY, None)
    st.session_state[NOTE_KEY] = "Locked: you are a viewer in this browser session again."


def access_sidebar() -> None:
    """Shared mode's box in the sidebar: who you are, and the owner's classroom settings or the
    viewer's sign-in. Nothing outside shared mode."""
    if not shared_mode():
        return
    ss = st.session_state
    me, settings = role(), classroom().settings
    box = st.sidebar.container(border=True)
    if me == OWNER:
        box.markdown("**:material/key: Shared mode** · you control this dashboard")
        if len(classroom().secret) < MIN_TOKEN_CHARS:
            box.warning(f"The owner's secret has {len(classroom().secret)} characters: a student could guess it. "
                        f"Restart with a {TOKEN_ENV} of {MIN_TOKEN_CHARS} or more.", icon=":material/warning:")
        with box.expander("Classroom settings"):
            st.toggle("Viewers may run lesson studies", value=settings.viewer_lessons, key="access_viewer_lessons",
                      on_change=_set, args=("viewer_lessons",),
                      help="Each within the quotas below; nothing else they do starts or stops training.")
            for name, (label, lo, hi, hint) in SETTING_WIDGETS.items():
                st.number_input(label, lo, hi, int(getattr(settings, name)), key=f"access_{name}", on_change=_set,
                                args=(name,), help=hint, disabled=not settings.viewer_lessons)
            st.toggle("Viewers may compute Inspect outputs", value=settings.viewer_inspect,
                      key="access_viewer_inspect", on_change=_set, args=("viewer_inspect",),
                      help="For a run nobody opened on Inspect yet: its per-sample outputs take the server about "
                           "13 s per split, and are kept beside its checkpoint (deleted with the run). Off: viewers "
                           "inspect the runs you opened there.")
            for name, (label, lo, hi, hint) in INSPECT_WIDGETS.items():
                st.number_input(label, lo, hi, int(getattr(settings, name)), key=f"access_{name}", on_change=_set,
                                args=(name,), help=hint, disabled=not settings.viewer_inspect)
            started = classroom().viewer_studies()
            if started:
                st.caption(f"Started by viewers: {', '.join(started)}")
            st.button("Lock (become a viewer)", key="access_lock", on_click=_lock, icon=":material/lock:")
    else:
        box.markdown("**:material/visibility: Shared mode** · you are watching")
        box.caption("The dashboard's owner starts, pauses, stops and retunes runs; you can watch them, browse "
                    "data and predictions, and try your own images on Predict."
                    + (f" You may also run a lesson's study ({settings.per_session} at a time)."
                       if settings.viewer_lessons else ""))
        with box.expander("Owner sign-in"):
            if ss.get("access_attempts", 0) >= MAX_ATTEMPTS:
                st.caption("Too many wrong secrets in this browser session; reload the page to try again.")
            else:
                with st.form("access_unlock", border=False):
                    st.text_input("Owner's secret", type="password", key="access_secret",
                                  help=f"The value of {TOKEN_ENV} on the server, or the owner link's secret "
                                       "printed in its console.")
                    st.form_submit_button("Unlock", on_click=_try_unlock, icon=":material/key:")
            if classroom().owners and login_configured():
                st.button("Sign in with your account", key="access_login", on_click=st.login)
    # the outcome of the last sign-in or lock stays until the next one: a full rerun of the page in
    # between (a run ending, a fragment's rerun) must not take it away before it was read
    note = ss.get(NOTE_KEY)
    if note:
        box.caption(note)


@st.cache_resource(show_spinner=False)
def class_predictions() -> Predictions:
    """What each browser predicted before the answer showed (process-wide: the class's)."""
    return Predictions()
