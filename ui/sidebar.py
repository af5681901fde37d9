"""The sidebar run picker shared by the Live, Predict, Inspect and Models pages, and what pages share
about a run: its label, and the checkpoint to use of it. Finding a run among thousands (search,
study and status filters, a bounded page): :mod:`ui.run_list`."""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import streamlit as st

from ui.run_list import STATUS_ICONS, filter_widgets, filtering, find, grouped, shown_caption, status_icon
from ui.state import manager, select_run, selected_run

__all__ = ["LABEL_CHARS", "PICKER_LIMIT", "STATUS_ICONS", "model_checkpoint", "picker_labels", "run_label",
           "run_picker", "short_name", "status_icon"]

PINNED = "📌 "  # before the label of the run shown when the list leaves it out
PICKER_LIMIT = 100  # runs a picker lists at most: the newest that pass its filters (a search finds the rest)
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


def run_label(run: dict[str, Any], study: str = "") -> str:
    """``✅ demo · 14:02`` (the id's time when the name is the id itself); a long name keeps what
    tells runs apart (see :func:`short_name`). ``study``: the study's name, left out of a name
    that starts with it (a list of that study's runs alone)."""
    when = datetime.fromtimestamp(run["created"]).strftime("%b %d %H:%M") if run.get("created") else ""
    name = run.get("name") or run["id"]
    if study and name.startswith(study + " · "):
        name = name[len(study) + 3:]
    name = short_name(name)
    return f"{status_icon(run['status'])} {name}" + (f" · {when}" if when and name != run["id"] else "")


def picker_labels(runs: list[dict[str, Any]], study: str = "") -> dict[str, str]:
    """Each run's :func:`run_label`, by id; runs whose labels would read the same (one name, one
    minute) end with their id's last characters, so no two look alike."""
    labels = {r["id"]: run_label(r, study) for r in runs}
    twins = Counter(labels.values())
    return {rid: f"{label} · {rid[-6:]}" if twins[label] > 1 else label for rid, label in labels.items()}


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
    """A select box in the sidebar listing runs (only those with a status in ``statuses`` when
    given) grouped by study and status, newest first, at most :data:`PICKER_LIMIT` of them, under
    a search box and study and status filters; returns the chosen run id, or None when there is none.

    The choice is shared by every page (``ui.state.select_run``): a run picked here, in the URL
    (``?run=``) or started from Setup is the one shown, when it passes ``statuses``, even when the
    filters or the list's bound leave it out (it is then listed first, marked :data:`PINNED`).
    """
    store = manager().store
    widget_key = f"run_picker.{key}"
    found = find(store, widget_key, statuses, PICKER_LIMIT)
    if not found.rows and not filtering(widget_key):
        st.sidebar.caption("No runs yet." if statuses is None else f"No {' / '.join(statuses)} runs yet.")
        st.session_state.pop(widget_key, None)
        return None
    filter_widgets(st.sidebar, widget_key, found, statuses, "Find a run")
    runs = grouped(found.rows)
    current = selected_run() or st.session_state.get(widget_key)
    outside = []
    if current and current not in {r["id"] for r in runs}:  # chosen elsewhere, or before the filters changed
        outside = store.find_runs(statuses=statuses, ids=[current], limit=1, counts=False).rows
        runs = outside + runs
    if not runs:  # the filters let nothing through: the newest run stays picked meanwhile
        runs = outside = store.find_runs(statuses=statuses, limit=1, counts=False).rows
        if not runs:
            st.sidebar.caption("No run matches the filters.")
            st.session_state.pop(widget_key, None)
            return None
    labels = picker_labels(runs, found.study_names.get(st.session_state.get(f"{widget_key}.study") or "", ""))
    for r in outside:
        labels[r["id"]] = PINNED + labels[r["id"]]
    current = selected_run()
    if current in labels:
        st.session_state[widget_key] = current  # follow a selection made elsewhere
    elif st.session_state.get(widget_key) not in labels:
        st.session_state[widget_key] = runs[0]["id"]
    choice = st.sidebar.selectbox(
        "Run", list(labels), key=widget_key, format_func=labels.__getitem__, on_change=_picked, args=(widget_key,),
        help="Runs grouped by study, then status, newest first. "
             + "  ".join(f"{i} {s}" for s, i in STATUS_ICONS.items()))
    notes = ["No run matches the filters." if not found.rows else shown_caption(found),
             f"{PINNED.strip()} the run shown, not among those listed." if outside else None]
    if any(notes):
        st.sidebar.caption(" ".join(n for n in notes if n))
    return choice
