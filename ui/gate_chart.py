"""The Predict page's gate chart: per task, how much of each expert its gate lets through for one
image (MMoE, CGC, PLE, DSelect-k; each task's bars sum to 1), or for PAD-Net how much of each
other task's message it takes in. Plotly only, no Streamlit, no torch."""
from __future__ import annotations

import html
from collections.abc import Mapping

import plotly.graph_objects as go

from ui.charts import colors, figure

GATE_HEIGHT = 260


def gate_figure(values: Mapping[str, Mapping[str, float]], titles: Mapping[str, str] | None = None,
                title: str = "Gates", y_title: str = "weight", prefix: str = "") -> go.Figure:
    """One bar per (task, expert), grouped under each task's name and coloured by task, on a fixed
    0 to 1 scale so images and runs compare; ``prefix`` goes before each expert's name (``"from "``)."""
    titles = titles or {}
    task_colors = colors(list(values))
    traces = []
    for t, experts in values.items():
        label = titles.get(t) or t
        names = [prefix + e for e in experts]
        ws = [float(w) for w in experts.values()]
        traces.append({"type": "bar", "name": label, "x": [[label] * len(names), names], "y": ws,
                       "marker": {"color": task_colors[t]}, "text": [f"{w:.2f}" for w in ws], "textposition": "outside",
                       "cliponaxis": False, "showlegend": False,
                       "hovertemplate": "%{x}<br>" + html.escape(y_title) + " %{y:.3f}<extra></extra>"})
    layout = dict(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=GATE_HEIGHT,
                  margin=dict(l=50, r=10, t=48, b=10), bargap=0.25, hovermode="closest",
                  yaxis=dict(range=[0, 1.12], title=dict(text=y_title), tickvals=[0, 0.25, 0.5, 0.75, 1]),
                  xaxis=dict(type="multicategory", automargin=True))
    return figure(traces, layout)
