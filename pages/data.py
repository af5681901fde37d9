"""Data: browse the dataset, as set up on the Setup page, with every task's ground truth drawn."""
from __future__ import annotations

import dataclasses
import math

import streamlit as st

from mtl_core.config import ExperimentConfig
from mtl_core.errors import MTLError
from mtl_core.views.preview import dataset_summary, sample_captions, sample_overlays
from ui import config_state as cs
from ui import state  # noqa: F401  (makes app.py's navigation own the pages: see ui/state.py)

ss = st.session_state
SPLITS = {"train": "Training", "val": "Validation", "test": "Test"}
COLUMNS = 4


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(key: str) -> dict:
    return dataset_summary(ExperimentConfig.from_json(key))


@st.cache_data(show_spinner=False, max_entries=64)
def _page(key: str, split: str, indices: tuple[int, ...], show: tuple[tuple[str, bool], ...]) -> tuple[list, list]:
    cfg = ExperimentConfig.from_json(key)
    return sample_overlays(cfg, split, indices, dict(show)), sample_captions(cfg, split, indices)


def _step_page(delta: int, pages: int) -> None:
    ss["data.page"] = min(max(1, int(ss.get("data.page", 1)) + delta), pages)


st.title("Data")
cfg = cs.build(ss) if cs.BASE_KEY in ss else ExperimentConfig()
key = dataclasses.replace(ExperimentConfig(), data=cfg.data, seed=cfg.seed).to_json()  # what the samples depend on
try:
    with st.spinner("Opening the dataset…"):
        summary = _summary(key)
except MTLError as e:
    st.error(f"The dataset as set up cannot be opened: {e}")
    st.page_link("pages/setup.py", label="Change the data settings on Setup", icon=":material/tune:")
    st.stop()

d = cfg.data
name = "the built-in scenes" if summary["name"] == "scenes" else summary["name"]
st.caption(f"Showing {name} as set up on the Setup page ({d.image_size} px"
           + (f", up to {d.max_objects} objects, noise {d.noise:g}" if d.dataset == "scenes" else "") + ").")

about, tasks_col = st.columns([2, 3], gap="large")
with about:
    st.markdown(f"**Classes** ({len(summary['class_names'])}): " + ", ".join(summary["class_names"]))
    st.markdown("**Samples**: " + ", ".join(f"{SPLITS.get(s, s).lower()} {n:,}" for s, n in summary["sizes"].items()))
with tasks_col:
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
    st.markdown("**Ground truth to draw**")
    cols = st.columns(3)
    for i, t in enumerate(drawable):
        ss.setdefault(f"data.show.{t['name']}", True)
        cols[i % 3].toggle(t["title"], key=f"data.show.{t['name']}", persist_state="session")

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
