"""Deleting runs (Compare's last section): pick among the runs a list shows, say how much it frees,
ask, then delete those that have ended; the owner's alone on a shared dashboard."""
from __future__ import annotations

from typing import Any

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.store.status import TERMINAL
from ui.metrics import format_bytes
from ui.roles import refused, why_not
from ui.run_files import run_files
from ui.state import manager

PICK = "compare_delete_pick"


def delete_runs(store: Any, runs: list[dict[str, Any]], label: dict[str, str]) -> None:
    """The multiselect of ``runs`` (``label``: each one's words, by id), the button, the question
    and the deletion. Runs picked before a filter changed stay picked. Reruns the page once done."""
    shown = {r["id"] for r in runs}
    kept = [i for i in st.session_state.get(PICK) or [] if i not in shown]
    older = store.find_runs(ids=kept, limit=len(kept), counts=False).rows if kept else []  # picked, now filtered out
    names = {r["id"]: f"{label.get(r['id'], r['name'])} · {r['status']}" for r in older + runs}
    doomed = st.multiselect("Runs to delete", list(names), format_func=names.get, key=PICK,
                            help="The runs the filters above show (and any picked before).")
    locked = why_not("run.delete")  # shared mode, a viewer
    if st.button("Delete …", key="compare_delete", disabled=not doomed or bool(locked), icon=":material/delete:",
                 help=locked) and not refused("run.delete"):
        st.session_state["compare_confirm"] = list(doomed)
    pending = st.session_state.get("compare_confirm")
    if pending:
        freed = sum(sum(run_files(store.run_dir(rid)).values()) for rid in pending)
        many = len(pending) != 1
        st.warning(f"Delete {len(pending)} run{'s' if many else ''} with {'their' if many else 'its'} "
                   f"metrics, checkpoints and kept outputs ({format_bytes(freed)} on disk)? This cannot be undone.")
        yes, no = st.columns([1, 6])
        if yes.button("Yes, delete", type="primary", key="compare_delete_yes"):
            errors = []
            for rid in pending:
                run = store.get_run(rid)
                if run is not None and (run["status"] not in TERMINAL or manager().is_active(rid)):
                    errors.append(f"{names.get(rid, rid)} is still {run['status']}; stop it before deleting")
                    continue
                try:
                    manager().delete(rid)
                except MTLError as e:
                    errors.append(str(e))
            st.session_state.pop("compare_confirm", None)
            st.session_state.pop(PICK, None)
            st.session_state["compare_deleted"] = st.session_state.get("compare_deleted", 0) + 1
            st.session_state["compare_delete_errors"] = errors
            st.rerun()
        if no.button("Cancel", key="compare_delete_no"):
            st.session_state.pop("compare_confirm", None)
            st.rerun()
    for msg in st.session_state.pop("compare_delete_errors", []):
        st.error(msg)
