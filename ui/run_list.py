"""Finding a run among thousands, for the run pickers and Compare: a search box, a study and a status
filter that say how many runs each choice holds, and a bounded page of runs (the store's
``find_runs``) grouped by study and status, newest first. What a page costs does not grow with the
store: it reads one page of light rows and a few counts."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from mtl_core.store.listing import NO_STUDY, RunList
from mtl_core.store.status import STATUSES, RunStatus

STATUS_ICONS = {
    RunStatus.QUEUED: "⏳", RunStatus.RUNNING: "🟢", RunStatus.PAUSED: "⏸️", RunStatus.FINISHED: "✅",
    RunStatus.FAILED: "❌", RunStatus.STOPPED: "⏹️", RunStatus.INTERRUPTED: "⚠️",
}
ALL_STUDIES = ""  # the study filter's "every run"
SEARCH_HELP = ("Words found in a run's name, method, tasks, study, level, tags or note (each word somewhere, any "
               'case); "quote a phrase" to find it whole.')


def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "•")


def filters_of(key: str, allowed: Sequence[str] | None) -> tuple[str, str | None, list[str] | None]:
    """What the filters under ``key`` hold now (before their widgets are drawn): the search, the
    study (None: all) and the statuses (the ``allowed`` ones when none is picked)."""
    ss = st.session_state
    picked = [s for s in ss.get(f"{key}.status") or [] if allowed is None or s in allowed]
    return str(ss.get(f"{key}.find") or ""), ss.get(f"{key}.study") or None, picked or (
        list(allowed) if allowed is not None else None)


def filtering(key: str) -> bool:
    """Whether any filter under ``key`` narrows the list."""
    ss = st.session_state
    return bool(ss.get(f"{key}.find") or ss.get(f"{key}.study") or ss.get(f"{key}.status"))


def find(store: Any, key: str, allowed: Sequence[str] | None = None, limit: int = 200,
         config: bool = False) -> RunList:
    """The runs the filters under ``key`` let through (of ``allowed`` statuses only), at most ``limit``."""
    text, study, statuses = filters_of(key, allowed)
    return store.find_runs(text, statuses, study, limit=limit, config=config)


def filter_widgets(where: Any, key: str, found: RunList, allowed: Sequence[str] | None = None,
                   label: str = "Find runs") -> None:
    """The search box, the study filter (when there are studies) and the status filter (when the
    runs have more than one), each choice with the number of runs it holds, under ``where`` (one
    container, or three: one each)."""
    ss = st.session_state
    find_at, study_at, status_at = where if isinstance(where, (list, tuple)) else (where,) * 3
    find_at.text_input(label, key=f"{key}.find", placeholder="name, method, task, study, tag", help=SEARCH_HELP)
    if found.study_names:
        chosen = ss.get(f"{key}.study")
        options = [ALL_STUDIES, NO_STUDY, *(s for s in found.study_names if found.studies.get(s) or s == chosen)]

        def study_label(s: str) -> str:
            if s == ALL_STUDIES:
                return "All runs"
            name = "Outside studies" if s == NO_STUDY else found.study_names.get(s, s)
            return f"{name} ({found.studies.get(s, 0):,})"

        study_at.selectbox("Study", options, key=f"{key}.study", format_func=study_label,
                        help="Runs that serve a study (a baseline may serve several), or none.")
    picked = ss.get(f"{key}.status") or []
    statuses = [s for s in (allowed if allowed is not None else STATUSES) if found.statuses.get(s) or s in picked]
    if len(statuses) > 1 or picked:
        status_at.pills("Status", [str(s) for s in statuses], selection_mode="multi", key=f"{key}.status",
                    format_func=lambda s: f"{status_icon(s)} {s} {found.statuses.get(s, 0):,}",
                    help="Only runs in the statuses picked; none picked: every one.")


def shown_caption(found: RunList, what: str = "type to narrow") -> str | None:
    """``Showing 200 of 5,000: type to narrow`` when the page holds fewer runs than match."""
    if found.total <= len(found.rows):
        return None
    return f"Showing the newest {len(found.rows):,} of {found.total:,} runs: {what}."


def grouped(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (newest first) grouped by study, runs outside studies one group, and within a study by
    status; groups in the order of their newest run, runs newest first within."""
    first_study: dict[str, int] = {}
    first_status: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        first_study.setdefault(r.get("study") or "", i)
        first_status.setdefault((r.get("study") or "", r["status"]), i)
    order = sorted(range(len(rows)), key=lambda i: (first_study[rows[i].get("study") or ""],
                                                    first_status[(rows[i].get("study") or "", rows[i]["status"])], i))
    return [rows[i] for i in order]
