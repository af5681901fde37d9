"""Home: what the tool does, a one-click demo run, and the recent runs."""
from __future__ import annotations

import os
from datetime import datetime

import pandas as pd
import streamlit as st

from mtl_core.config import DEFAULT_TASKS, ExperimentConfig
from mtl_core.errors import MTLError
from mtl_core.runs.manager import EXECUTOR_ENV
from mtl_core.store.postgres import database_url, redact
from mtl_core.store.status import ACTIVE
from ui.engine import runs_dir
from ui.entry import through_app
from ui.roles import why_not
from ui.sidebar import status_icon
from ui.state import manager, open_run

through_app()  # a link opened first on a fresh server: rerun through app.py

DEMO_NAME = "Demo: classification + detection + segmentation"
RECENT = 20  # runs listed


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M") if t else ""


st.title("MTL Studio")
st.markdown(
    "MTL Studio trains one network on several vision tasks at once (classification, detection, "
    "segmentation, depth ...) and lets you choose how their losses are fused, from fixed weights to "
    "gradient-balancing methods such as PCGrad or Nash-MTL. Watch every task's curves live while it "
    "trains, compare runs, then upload images to see all the tasks' predictions drawn on them."
)

demo, links = st.columns([2, 3], gap="large", vertical_alignment="center")
with demo:
    st.write(f"**Try it**: a demo run learns {', '.join(DEFAULT_TASKS)} together on the built-in "
             "scenes of coloured shapes, with the default settings.")
with links:
    locked = why_not("run.start")  # shared mode, a viewer: the owner starts runs
    if st.button("Start a demo run", type="primary", key="home.demo", icon=":material/play_arrow:",
                 disabled=bool(locked), help=locked):
        try:
            with st.spinner("Starting the demo run…"):
                run_id = manager().start(ExperimentConfig(name=DEMO_NAME), name=DEMO_NAME)
        except MTLError as e:
            st.error(f"The demo run could not start: {e}")
        else:
            open_run(run_id)
    a, b, c = st.columns(3)
    a.page_link("pages/setup.py", label="Or set up your own experiment", icon=":material/tune:")
    b.page_link("pages/lessons.py", label="Learn MTL, one lesson at a time", icon=":material/school:")
    c.page_link("pages/data.py", label="Browse the dataset", icon=":material/photo_library:")

st.subheader("Recent runs")
runs = manager().store.list_runs(limit=RECENT)
if not runs:
    st.info("No runs yet. Start the demo, or set one up on the Setup page.")
else:
    table = pd.DataFrame([{
        "status": f"{status_icon(r['status'])} {r['status']}",
        "name": r["name"],
        "progress": (r["step"] / r["total_steps"]) if r["total_steps"] else 0.0,
        "steps": f"{r['step']:,} / {r['total_steps']:,}",
        "tasks": ", ".join(r["config"].get("tasks", [])),
        "fusion": r["config"].get("weighting", {}).get("method", ""),
        "architecture": r["config"].get("model", {}).get("architecture", ""),
        "created": _when(r["created"]),
        "id": r["id"],
    } for r in runs])
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                                   format="percent")},
    )
    active = sum(r["status"] in ACTIVE for r in runs)
    shown = f"The {len(runs)} most recent runs" if len(runs) == RECENT else f"{len(runs)} run{'s' * (len(runs) > 1)}"
    st.caption(f"{shown}, {active} active. Open one from the sidebar of the Live training, Compare runs "
               "or Predict page.")
url = database_url()
executor = os.environ.get(EXECUTOR_ENV, "").strip() or "thread"
st.caption(f"Run store: {'PostgreSQL ' + redact(url) if url else 'SQLite'}; checkpoints under `{runs_dir()}`; "
           + ("new runs train as tasks of the Ray cluster." if executor == "ray" else "new runs train in this process."))
