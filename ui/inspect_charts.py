"""Plotly figures of the Inspect page: a confusion matrix whose cells can be clicked, per-class
precision-recall curves, a reliability diagram, how tasks fail together, and a sample's top answers.

Plotly and numpy only (no Streamlit, no torch); they read the plain objects of
``mtl_core.measures.types`` (taken as they are, not imported, so this module stays light).
Plotly's heat maps send no selection events to Streamlit (streamlit/streamlit#8760), so a
confusion matrix is a heat map with an invisible marker on every cell: a click on a cell selects
its marker, and the page reads the cell from the selection.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ui.charts import PALETTE, _base_layout, figure

CONFUSION_SCALE = [[0.0, "#f7fbff"], [0.5, "#6baed6"], [1.0, "#08306b"]]  # white to dark blue (plotly's "Blues" runs the other way)
RIGHT, WRONG = "#2ca02c", "#d62728"


def normalised(counts: Sequence[Sequence[float]], by_row: bool) -> np.ndarray:
    """Counts, or each row divided by its total (a row with nothing stays 0)."""
    z = np.asarray(counts, dtype=float)
    if not by_row:
        return z
    totals = z.sum(axis=1, keepdims=True)
    return np.divide(z, totals, out=np.zeros_like(z), where=totals > 0)


def confusion_figure(matrix: Any, by_row: bool = False) -> Any:
    """The matrix as an annotated heat map, truth down the side, prediction along the top;
    ``by_row``: each row as shares of its total (recall on the diagonal)."""
    counts = np.asarray(matrix.counts, dtype=float)
    z = normalised(counts, by_row)
    rows, cols = list(matrix.rows), list(matrix.cols)
    text = [[(f"{v:.0%}" if by_row else f"{int(c):,}") if c else "" for v, c in zip(zr, cr)] for zr, cr in zip(z, counts)]
    heat = {"type": "heatmap", "z": z.tolist(), "x": cols, "y": rows, "colorscale": CONFUSION_SCALE,
            "zmin": 0.0, "zmax": 1.0 if by_row else max(1.0, float(z.max(initial=0.0))),
            "text": text, "texttemplate": "%{text}", "textfont": {"size": 12}, "xgap": 1, "ygap": 1,
            "hoverinfo": "skip", "showscale": True,
            "colorbar": {"title": {"text": "share of row" if by_row else matrix.unit, "side": "right"},
                         "thickness": 12, "len": 0.9}}
    xs, ys, custom, hover = [], [], [], []
    for r, name_r in enumerate(rows):
        for c, name_c in enumerate(cols):
            xs.append(name_c)
            ys.append(name_r)
            custom.append([r, c])
            share = f" ({z[r, c]:.0%} of the row)" if by_row else ""
            hover.append(f"truth {name_r} · predicted {name_c}<br>{int(counts[r, c]):,} {matrix.unit}{share}"
                         f"<br>{len(matrix.samples.get((r, c), []))} samples: click to list them")
    clicks = {"type": "scatter", "mode": "markers", "x": xs, "y": ys, "customdata": custom, "text": hover,
              "hovertemplate": "%{text}<extra></extra>", "showlegend": False,
              "marker": {"symbol": "square", "size": 26, "opacity": 0.01, "color": "#000"}, "cliponaxis": True,
              "selected": {"marker": {"opacity": 0.01}}, "unselected": {"marker": {"opacity": 0.01}}}
    layout = _base_layout(matrix.title + (" · " + matrix.note if matrix.note else ""), max(320, 150 + 44 * len(rows)), "")
    layout.update(hovermode="closest", clickmode="event+select", dragmode=False,
                  margin=dict(l=10, r=10, t=56, b=10),
                  # fixed ranges: the click markers must not pad the axes (which squashed the cells)
                  xaxis=dict(title=dict(text="predicted"), side="top", tickangle=-30, automargin=True,
                             type="category", categoryorder="array", categoryarray=cols,
                             range=[-0.5, len(cols) - 0.5], showgrid=False, fixedrange=True),
                  yaxis=dict(title=dict(text="truth"), automargin=True, type="category",
                             categoryorder="array", categoryarray=rows, range=[len(rows) - 0.5, -0.5],
                             showgrid=False, fixedrange=True))
    return figure([heat, clicks], layout)


def picked_cell(event: Any) -> tuple[int, int] | None:
    """The ``(row, column)`` clicked in :func:`confusion_figure`, from ``st.plotly_chart``'s event."""
    try:
        points = event["selection"]["points"] if isinstance(event, dict) else event.selection.points
    except (AttributeError, KeyError, TypeError):
        return None
    for p in points or []:
        custom = p.get("customdata") if isinstance(p, dict) else None
        if custom and len(custom) == 2:
            return int(custom[0]), int(custom[1])
    return None


def pr_figure(curves: Sequence[Any], title: str) -> Any:
    """Precision against recall, one line per class with its AP in the legend; a dot marks each
    class at the page's score threshold."""
    traces = []
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        ap = "" if c.summary is None or math.isnan(c.summary) else f" {c.summary_name} {c.summary:.3f}"
        traces.append({"type": "scatter", "mode": "lines", "x": c.x, "y": c.y, "name": f"{c.title}{ap}",
                       "line": {"color": color, "shape": "hv", "width": 2}, "legendgroup": c.title,
                       "hovertemplate": f"{c.title}<br>recall %{{x:.2f}} · precision %{{y:.2f}}<extra></extra>"})
        if c.point is not None:
            traces.append({"type": "scatter", "mode": "markers", "x": [c.point[0]], "y": [c.point[1]],
                           "marker": {"color": color, "size": 9, "line": {"color": "#fff", "width": 1}},
                           "showlegend": False, "legendgroup": c.title,
                           "hovertemplate": f"{c.title} at the score threshold<br>recall %{{x:.2f}} · "
                                            f"precision %{{y:.2f}}<extra></extra>"})
    layout = _base_layout(title, 380, "")
    layout.update(hovermode="closest", legend=dict(orientation="v", x=1.02, y=1, xanchor="left", font=dict(size=11)),
                  xaxis=dict(title=dict(text="recall"), range=[0, 1.02]),
                  yaxis=dict(title=dict(text="precision"), range=[0, 1.02]), margin=dict(l=50, r=10, t=56, b=40))
    return figure(traces, layout)


def reliability_figure(curve: Any) -> Any:
    """Accuracy per confidence bin (bars, with their sample counts) against the diagonal a
    calibrated model would follow; the ECE in the title."""
    bins = len(curve.x)
    centres = [(b + 0.5) / bins for b in range(bins)]
    acc = [None if v is None or math.isnan(v) else v for v in curve.y]
    bars = {"type": "bar", "x": centres, "y": acc, "width": 0.9 / bins, "name": "accuracy in the bin",
            "marker": {"color": PALETTE[0]}, "customdata": [[n, x] for n, x in zip(curve.counts, curve.x)],
            "hovertemplate": "confidence %{customdata[1]:.2f}<br>accuracy %{y:.2f}<br>%{customdata[0]} samples"
                             "<extra></extra>"}
    ideal = {"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "calibrated",
             "line": {"color": "#7f7f7f", "dash": "dash"}, "hoverinfo": "skip"}
    ece = "" if math.isnan(curve.summary) else f" · ECE {curve.summary:.3f}"
    layout = _base_layout(f"{curve.title}: reliability{ece}", 340, "")
    layout.update(hovermode="closest", xaxis=dict(title=dict(text="confidence"), range=[0, 1]),
                  yaxis=dict(title=dict(text="accuracy"), range=[0, 1.02]), margin=dict(l=50, r=10, t=56, b=40))
    return figure([bars, ideal], layout)


def co_failure_figure(co: dict[str, Any], titles: dict[str, str]) -> Any:
    """Of the samples where the row's task failed, the share where the column's task failed too
    (the diagonal: each task's failure rate)."""
    names = [titles.get(t, t) for t in co["tasks"]]
    z = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in row] for row in co["share"]]
    text = [["" if v is None else f"{v:.0%}" for v in row] for row in z]
    trace = {"type": "heatmap", "z": z, "x": names, "y": names, "zmin": 0.0, "zmax": 1.0, "colorscale": "Reds",
             "text": text, "texttemplate": "%{text}", "xgap": 2, "ygap": 2,
             "customdata": co["count"],
             "hovertemplate": "when %{y} fails, %{x} fails too in %{z:.0%}<br>(%{customdata} samples)<extra></extra>",
             "colorbar": {"thickness": 12, "len": 0.9}}
    layout = _base_layout("How tasks fail together", 120 + 40 * len(names), "")
    layout.update(hovermode="closest", margin=dict(l=10, r=10, t=56, b=10),
                  xaxis=dict(title=dict(text="…this task fails too"), tickangle=-30, automargin=True),
                  yaxis=dict(title=dict(text="when this task fails"), autorange="reversed", automargin=True))
    return figure([trace], layout)


def top_figure(top: Sequence[tuple[str, float]], truth: str = "", title: str = "") -> Any:
    """A task's most likely answers as horizontal bars, the true answer's bar green (red for the
    top one when it is wrong)."""
    names = [n for n, _ in top][::-1]
    probs = [p for _, p in top][::-1]
    colors = [RIGHT if n == truth else (WRONG if truth and i == len(names) - 1 else "#9ecae1") for i, n in enumerate(names)]
    trace = {"type": "bar", "orientation": "h", "x": probs, "y": names, "marker": {"color": colors},
             "text": [f"{p:.0%}" for p in probs], "textposition": "auto",
             "hovertemplate": "%{y}: %{x:.1%}<extra></extra>"}
    layout = _base_layout(title, 60 + 26 * len(names), "")
    layout.update(hovermode="closest", showlegend=False, margin=dict(l=10, r=10, t=40, b=20),
                  xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(automargin=True))
    return figure([trace], layout)
