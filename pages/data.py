"""Data: browse the dataset, as set up on the Setup page, with every task's ground truth drawn."""
from __future__ import annotations

import dataclasses
import math

import pandas as pd
import streamlit as st

from mtl_core.config import ExperimentConfig
from mtl_core.data.check import DataReport, check_data
from mtl_core.data.table import MAX_LINES
from mtl_core.data.table import summary as problem_lines
from mtl_core.errors import MTLError
from mtl_core.views.preview import dataset_summary, sample_captions, sample_overlays
from ui import config_state as cs
from ui import state  # noqa: F401  (makes app.py's navigation own the pages: see ui/state.py)
from ui.charts import DRAWN_AT_FIRST, MANY_TASKS
from ui.entry import through_app

through_app()  # a link opened first on a fresh server: rerun through app.py

ss = st.session_state
SPLITS = {"train": "Training", "val": "Validation", "test": "Test"}
COLUMNS = 4


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(key: str) -> dict:
    return dataset_summary(ExperimentConfig.from_json(key))


@st.cache_data(show_spinner=False, max_entries=16, ttl=30)
def _report(key: str) -> DataReport:
    return check_data(ExperimentConfig.from_json(key))


def _show_report(report: DataReport) -> None:
    """The label table's check: each task column with its kind and labels, then every problem
    with its file and row (the first 50 on the page, all of them in the download)."""
    st.subheader("Check", anchor="check")
    rows = [{"task": t["name"], "kind": t["kind"] or "unknown", "train": t["labels"].get("train", 0),
             "val": t["labels"].get("val", 0), "test": t["labels"].get("test", 0), "classes": t["classes"],
             "how the kind was found": t["how"]} for t in report.tasks]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if report.ok:
        st.success(f"No problems in {report.source}: every image opens, every label fits its task.",
                   icon=":material/check_circle:")
        return
    n = len(report.problems)
    st.error(f"{n} problem{'s' if n != 1 else ''} in {report.source}. A run refuses to start on this data "
             "until they are fixed, or **On bad rows** on Setup is set to *skip them* (the run then says how many "
             "rows it left out and why).", icon=":material/error:")
    st.code(problem_lines(report.problems, MAX_LINES), language=None, wrap_lines=True)
    table = pd.DataFrame([{"file": p.file, "row": p.line or "", "column": p.column, "problem": p.message}
                          for p in report.problems])
    st.download_button("Download every problem (CSV)", table.to_csv(index=False), "problems.csv", "text/csv",
                       key="data.problems_csv", on_click="ignore", icon=":material/download:")


@st.cache_data(show_spinner=False, max_entries=64)
def _page(key: str, split: str, indices: tuple[int, ...], show: tuple[tuple[str, bool], ...]) -> tuple[list, list]:
    cfg = ExperimentConfig.from_json(key)
    return sample_overlays(cfg, split, indices, dict(show)), sample_captions(cfg, split, indices)


def _step_page(delta: int, pages: int) -> None:
    ss["data.page"] = min(max(1, int(ss.get("data.page", 1)) + delta), pages)


st.title("Data")
cfg = cs.build(ss) if cs.BASE_KEY in ss else ExperimentConfig()
# what the samples depend on: the data, and for a label table the columns chosen and their declared kinds
key = dataclasses.replace(ExperimentConfig(), data=cfg.data, seed=cfg.seed,
                          **({"tasks": cfg.tasks, "task_specs": cfg.task_specs} if cfg.data.dataset == "manifest" else {})
                          ).to_json()
if cfg.data.dataset == "manifest":
    try:
        with st.spinner("Checking every row of the label table…"):
            report = _report(key)
    except MTLError as e:
        st.error(f"The label table cannot be read: {e}", icon=":material/error:")
        st.page_link("pages/setup.py", label="Change the data settings on Setup", icon=":material/tune:")
        st.stop()
    _show_report(report)
    if not report.ok and cfg.data.on_error != "skip":
        st.stop()
try:
    with st.spinner("Opening the dataset…"):
        summary = _summary(key)
except MTLError as e:
    st.error(f"The dataset as set up cannot be opened: {e}")
    st.page_link("pages/setup.py", label="Change the data settings on Setup", icon=":material/tune:")
    st.stop()

d = cfg.data
name = "the built-in scenes" if summary["name"] == "scenes" else summary["name"]
st.caption(f"Showing {name} as set up on the Setup page ({'x'.join(dict.fromkeys(map(str, d.hw)))} px"
           + (f", up to {d.max_objects} objects, noise {d.noise:g}" if d.dataset == "scenes" else "") + ").")

about, tasks_col = st.columns([2, 3], gap="large")
with about:
    if summary["class_names"]:
        st.markdown(f"**Classes** ({len(summary['class_names'])}): " + ", ".join(summary["class_names"]))
    st.markdown("**Samples**: " + ", ".join(f"{SPLITS.get(s, s).lower()} {n:,}" for s, n in summary["sizes"].items()))
with tasks_col:
    if d.dataset != "manifest":  # a label table's tasks are in the check above
        st.markdown("**Tasks this dataset supplies labels for**")
        st.markdown("\n".join(f"- **{t['title']}**: {t['description'] or t['name']}"
                              + ("" if t["available"] else " (no such task in this version)") for t in summary["tasks"]))

drawable = [t for t in summary["tasks"] if t["available"]]
controls, toggles = st.columns([2, 3], gap="large")
with controls:
    split = st.radio("Split", list(SPLITS), format_func=SPLITS.get, key="data.split", horizontal=True,
                     persist_state="session")
    per_page = st.selectbox("Samples per page", [8, 16, 24], key="data.per_page", persist_state="session")
with toggles:
    if len(drawable) <= MANY_TASKS:
        st.markdown("**Ground truth to draw**")
        cols = st.columns(3)
        for i, t in enumerate(drawable):
            ss.setdefault(f"data.show.{t['name']}", True)
            cols[i % 3].toggle(t["title"], key=f"data.show.{t['name']}", persist_state="session")
    else:  # forty attributes would be forty toggles, and forty labels on one picture: pick a few
        names = [t["name"] for t in drawable]
        ss["data.show_few"] = [n for n in ss.get("data.show_few", names[:DRAWN_AT_FIRST]) if n in names]
        picked = st.multiselect("Ground truth to draw", names, key="data.show_few", persist_state="session",
                                help=f"{len(names)} tasks: choose the few to draw on each picture")
        for n in names:
            ss[f"data.show.{n}"] = n in picked

total = summary["sizes"].get(split, 0)
if total == 0:
    st.info(f"The {SPLITS[split].lower()} split is empty.")
    st.stop()
pages = max(1, math.ceil(total / per_page))
ss["data.page"] = min(max(1, int(ss.get("data.page", 1))), pages)  # the split or page size may have changed
prev, number, nxt, where = st.columns([1, 2, 1, 4], vertical_alignment="bottom")
prev.button("◀ Previous", key="data.prev", on_click=_step_page, args=(-1, pages), disabled=ss["data.page"] <= 1)
number.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="data.page")
nxt.button("Next ▶", key="data.next", on_click=_step_page, args=(1, pages), disabled=ss["data.page"] >= pages)
start = (ss["data.page"] - 1) * per_page
indices = tuple(range(start, min(start + per_page, total)))
where.caption(f"Samples {indices[0]}–{indices[-1]} of the {total:,} in the {SPLITS[split].lower()} split.")

show = tuple((t["name"], bool(ss.get(f"data.show.{t['name']}", True))) for t in drawable)
try:
    with st.spinner("Drawing samples…"):
        images, captions = _page(key, split, indices, show)
except MTLError as e:
    st.error(f"Could not draw the samples: {e}")
    st.stop()
grid = st.columns(COLUMNS)
for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
    grid[i % COLUMNS].image(image, caption=caption, width="stretch")
