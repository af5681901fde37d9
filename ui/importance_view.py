"""Which features each task uses: a tasks x channels heat map of per-task importance of the shared
backbone's channels, sorted so that each task's block shows, with the counts in words.

The numbers come from ``mtl_core.deploy.importance`` (first-order Taylor importance, Molchanov et
al., CVPR 2019) as plain lists; this module draws them and holds them per checkpoint. No torch.
"""
from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mtl_core.deploy.importance import checkpoint_importance
from mtl_core.errors import MTLError

BATCH_SIZE = 16


@st.cache_data(max_entries=16, show_spinner="Measuring each task's importance of every channel …")
def importance(path: str, mtime: float, batches: int) -> dict[str, Any]:
    """A checkpoint file version's importance (``Importance.to_plain()``), shared by every session."""
    return checkpoint_importance(path, batches=batches, batch_size=BATCH_SIZE).to_plain()


def heatmap_figure(tasks: Sequence[str], layer: Mapping[str, Any]) -> go.Figure:
    """Tasks down, channels across in ``layer["order"]``; colour: the share of a task's importance."""
    order = list(layer["order"])
    z = np.asarray(layer["values"], dtype=float)[:, order]  # (T, C) sorted
    text = np.where(np.asarray(layer["used"], dtype=bool)[:, order], "uses it", "does not use it")
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"c{c}" for c in order], y=list(tasks), text=text, colorscale="Viridis",
        colorbar={"title": "share"},
        hovertemplate="channel %{x} · %{y}: %{z:.2%} of its importance (%{text})<extra></extra>"))
    fig.update_layout(height=120 + 40 * len(tasks), margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"title": "channel (sorted by the task using it most, then by total importance)",
                             "type": "category", "showticklabels": len(order) <= 64},
                      yaxis={"autorange": "reversed"})
    return fig


def counts_text(lines: Sequence[str]) -> str:
    """The summary lines in one sentence: "12 of 32 channels serve all 3 tasks; 5 serve detection only; ..."."""
    return "; ".join(lines) + "."


def section(ck: Mapping[str, Any], run_id: str) -> None:
    """The page section: batches, a button, then the layer picker, the counts and the heat map."""
    st.subheader("Which features each task uses")
    st.caption("For every channel of the shared backbone, how much each task's own loss would change if it were "
               "zeroed (first-order Taylor importance, Molchanov et al., CVPR 2019), on the first validation "
               "batches; each task's row is a share summing to 100%. A task uses a channel with at least a tenth "
               "of its average channel's share. Channels no task uses, or only one, are candidates for pruning.")
    state = f"models_importance_{run_id}"
    c1, c2 = st.columns([1, 3])
    batches = int(c1.number_input("Validation batches", 1, 64, 4, 1, key="models_importance_batches",
                                  help=f"Batches of {BATCH_SIZE} validation images to average over."))
    if c2.button("Measure importance", key="models_importance_go", icon=":material/insights:"):
        st.session_state[state] = (ck["path"], batches)
    picked = st.session_state.get(state)
    if not picked or picked[0] != ck["path"] or not os.path.isfile(picked[0]):
        st.caption("Press **Measure importance** to see which channels serve all tasks, one task, or none.")
        return
    try:
        result = importance(picked[0], os.path.getmtime(picked[0]), picked[1])
    except (MTLError, RuntimeError, ValueError) as e:
        st.error(f"Could not measure feature importance: {e}")
        return
    names = list(result["layers"])
    layer = st.selectbox("Layer", names, index=len(names) - 1, key="models_importance_layer",
                         help="features: the backbone's output that every head reads; stage1 ...: earlier stages.")
    data = result["layers"][layer]
    st.markdown(html.escape(counts_text(data["summary"])))
    st.plotly_chart(heatmap_figure(result["tasks"], data), key="models_importance_map",
                    width="stretch", config={"displayModeBar": False})
