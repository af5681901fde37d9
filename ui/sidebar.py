"""The sidebar run picker shared by the Live, Compare and Predict pages, and what those pages
share about a run: its label, and the checkpoint to use of it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

import streamlit as st

from mtl_core.store.status import RunStatus
from ui.state import manager, select_run, selected_run

STATUS_ICONS = {
    RunStatus.QUEUED: "⏳", RunStatus.RUNNING: "🟢", RunStatus.PAUSED: "⏸️", RunStatus.FINISHED: "✅",
    RunStatus.FAILED: "❌", RunStatus.STOPPED: "⏹️", RunStatus.INTERRUPTED: "⚠️",
}


def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "•")


LABEL_CHARS = 40  # a run's name in a picker, at most


def short_name(name: str, limit: int = LABEL_CHARS) -> str:
    """A run's name cut to ``limit`` characters where it tells runs apart least: a study run's name
    is "study · level · seed N", so the study's title is cut first, then the level's middle, and the
    last part (the seed) never: "fusion on… · segmentation alone · seed 0" and "... · seed 1" stay two labels."""
    if len(name) <= limit:
        return name
    parts = name.split(" · ")
    if len(parts) == 1:
        return name[:limit - 1] + "…"
    tail = " · ".join(parts[1:])
    room = limit - len(tail) - 3
    if room >= 4:
        return parts[0][:room - 1] + "… · " + tail
    last, middle = parts[-1], " · ".join(parts[1:-1])
    room = limit - len(last) - 3
    if not middle or room < 2:
        return last[:limit - 1] + "…" if len(last) > limit else last
    if len(middle) > room:  # the level: its start and its end (where factor values differ), the rest elided
        head = room // 3
        middle = middle[:head] + "…" + middle[len(middle) - (room - head - 1):]
    return middle + " · " + last


def run_label(run: dict[str, Any]) -> str:
    """``✅ demo · 14:02`` (the id's time when the name is the id itself); a long name keeps what
    tells runs apart (see :func:`short_name`)."""
    when = datetime.fromtimestamp(run["created"]).strftime("%b %d %H:%M") if run.get("created") else ""
    name = short_name(run.get("name") or run["id"])
    return f"{status_icon(run['status'])} {name}" + (f" · {when}" if when and name != run["id"] else "")


def model_checkpoint(store: Any, run: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to use of ``run``: the one its model selection chooses (its best on
    validation unless its config says otherwise; a running run's best so far, or its last save),
    with ``"chosen"`` saying which; ``None`` before the first is written."""
    return store.chosen_checkpoint(run["id"])


def _picked(widget_key: str) -> None:
    run_id = st.session_state.get(widget_key)
    if run_id:
        select_run(run_id)


def run_picker(key: str = "run", statuses: tuple[str, ...] | None = None) -> str | None:
    """A select box in the sidebar listing runs newest first with status icons (only those with
    a status in ``statuses`` when given); returns the chosen run id, or None when there is none.

    The choice is shared by every page (``ui.state.select_run``): a run picked here, in the URL
    (``?run=``) or started from Setup is the one shown, when it passes the filter.
    """
    runs = [r for r in manager().store.list_runs() if statuses is None or r["status"] in statuses]
    widget_key = f"run_picker.{key}"
    if not runs:
        st.sidebar.caption("No runs yet." if statuses is None else
                           f"No {' / '.join(statuses)} runs yet.")
        st.session_state.pop(widget_key, None)
        return None
    labels = {r["id"]: run_label(r) for r in runs}
    current = selected_run()
    if current in labels:
        st.session_state[widget_key] = current  # follow a selection made elsewhere
    elif st.session_state.get(widget_key) not in labels:
        st.session_state[widget_key] = runs[0]["id"]
    return st.sidebar.selectbox("Run", list(labels), key=widget_key, format_func=labels.__getitem__,
                                on_change=_picked, args=(widget_key,),
                                help="Runs newest first. " + "  ".join(f"{i} {s}" for s, i in STATUS_ICONS.items()))
