"""A person's tags and note on a run: shown under its header on Live, edited there by the owner (on a
shared dashboard a viewer sees them, and the editor disabled). They make a run findable in every
run list (see :mod:`ui.run_list`)."""
from __future__ import annotations

from typing import Any

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.store.listing import LABEL_CHARS, MAX_LABELS, NOTE_CHARS
from ui.roles import refused, why_not
from ui.state import manager

ACTION = "run.annotate"


def _keys(run_id: str) -> tuple[str, str]:
    return f"live_tags_{run_id}", f"live_note_{run_id}"


def _save(run_id: str) -> None:
    """The Save button's callback: the server's check first (a disabled button is the browser's word)."""
    ss = st.session_state
    ss.pop("live_notes_error", None)
    reason = refused(ACTION, show=False)
    if reason:
        ss["live_notes_error"] = reason
        return
    tags_key, note_key = _keys(run_id)
    store = manager().store
    try:
        kept = store.set_labels(run_id, [t for t in str(ss.get(tags_key, "")).split(",")])
        store.set_note(run_id, str(ss.get(note_key, "")))
    except MTLError as e:  # a tag refused: the message names it and says what a tag may hold
        ss["live_notes_error"] = str(e)
        return
    ss[tags_key] = ", ".join(kept)  # as kept: spaces collapsed, each tag once
    ss["live_notes_saved"] = run_id


def show_notes(run: dict[str, Any]) -> None:
    """The run's tags as badges and its note, when it has any."""
    labels, note = run.get("labels") or [], (run.get("note") or "").strip()
    if labels:
        st.markdown(" ".join(f":violet-badge[{t}]" for t in labels))
    if note:
        st.caption(note)


def notes_editor(run: dict[str, Any]) -> None:
    """An expander to edit the run's tags (comma-separated) and note; the owner's alone."""
    rid = run["id"]
    tags_key, note_key = _keys(rid)
    ss = st.session_state
    ss.setdefault(tags_key, ", ".join(run.get("labels") or []))
    ss.setdefault(note_key, run.get("note") or "")
    locked = why_not(ACTION)
    with st.expander("Tags and note", icon=":material/sell:"):
        st.text_input("Tags", key=tags_key, disabled=bool(locked), placeholder="baseline, paper, check again",
                      help=f"Comma-separated, at most {MAX_LABELS}; each up to {LABEL_CHARS} letters, digits, spaces "
                           "and - _ . : + / # @. Every run list finds a run by its tags.")
        st.text_area("Note", key=note_key, disabled=bool(locked), max_chars=NOTE_CHARS, height=80,
                     help="What you want to remember about this run; the run lists' search reads it too.")
        st.button("Save", key=f"live_notes_save_{rid}", disabled=bool(locked), help=locked, icon=":material/save:",
                  on_click=_save, args=(rid,))
        if "live_notes_error" in ss:
            st.error(ss.pop("live_notes_error"))
        elif ss.get("live_notes_saved") == rid:
            st.caption("Saved: the run lists find it by these now.")
