"""Plotly figures shared by the dashboard's pages: training curves with EMA smoothing, task-weight
curves, event markers (weight changes), gradient conflict (cosine heatmap and curves, gradient
norms) and the Pareto scatter. Plotly and pandas only: no Streamlit, no torch, so every function
here can be timed and tested headless. The live page's memo of these figures is ``ui/live_view.py``.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import diverging, qualitative

from ui.metrics import MetricCache, downsample, downsample_indices, ema, front_line, pareto_front

PALETTE = qualitative.Plotly + qualitative.D3
MAX_POINTS = 1000  # per series: a browser draws this many SVG points without lag
EVENT_COLOR = "rgba(120,120,120,0.8)"
# validation metrics sit under the loss in a task's panel: neutral colours, so they never read as
# another task's colour; the primary metric is the dark, solid one
METRIC_COLORS = ("#222222", "#8c8c8c", "#b07d48", "#5f8fa8")
# gradient cosines: red where two tasks' gradients point apart (conflict), blue where they agree
COSINE_SCALE = [[i / (len(diverging.RdBu) - 1), c] for i, c in enumerate(diverging.RdBu)]
GRAD_COS, GRAD_NORM = "gradcos/", "gradnorm/"


# a run or dataset of more tasks than this: pages list them all in a table or a picker and draw,
# chart or word a chosen few, the first DRAWN_AT_FIRST of them to begin with (forty attributes
# drawn at once cover the picture; forty charts bury each other)
MANY_TASKS = 8
DRAWN_AT_FIRST = 4


@dataclass(frozen=True)
class TaskMeta:
    """What a chart needs to know about a task: its primary metric and that metric's direction."""

    name: str
    primary: str = ""
    higher_is_better: bool = True
    title: str = ""
    description: str = ""
    fusion: str = ""
    kind: str = ""

    @property
    def label(self) -> str:
        return self.title or self.name.replace("_", " ").capitalize()


def _scatter(**kwargs: Any) -> dict:
    return {"type": "scatter", **kwargs}


def figure(traces: list[dict], layout: dict) -> go.Figure:
    """A figure from plain trace/layout dicts, without plotly's per-property validation: it costs
    ~50 ms per figure and the live page redraws several figures every second. The dicts here are
    fixed by this module (and validated in its tests), never built from user input."""
    try:
        return go.Figure(data=traces, layout=layout, _validate=False)
    except TypeError:  # a plotly without the private switch: validate, slower but correct
        return go.Figure(data=traces, layout=layout)


def colors(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (tasks or runs), in order."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def smoothed_traces(steps: np.ndarray, values: np.ndarray, smoothing: float, name: str, color: str,
                    yaxis: str = "y", xaxis: str = "x", legendgroup: str | None = None,
                    showlegend: bool = True, max_points: int = MAX_POINTS) -> list[dict]:
    """The raw series, faint, and its debiased EMA on top; both thinned to ``max_points``.

    Smoothing runs on every raw point first, so thinning never changes the smoothed curve."""
    if len(values) == 0:
        return []
    group = legendgroup or name
    idx = downsample_indices(values, max_points)
    traces = []
    if smoothing > 0:
        traces.append(_scatter(x=steps[idx], y=values[idx], mode="lines", name=f"{name} (raw)",
                                 line=dict(color=_rgba(color, 0.25), width=1), legendgroup=group,
                                 showlegend=False, hoverinfo="skip", xaxis=xaxis, yaxis=yaxis))
    smooth = ema(values, smoothing)
    traces.append(_scatter(x=steps[idx], y=smooth[idx], mode="lines", name=name, line=dict(color=color, width=2),
                             legendgroup=group, showlegend=showlegend, xaxis=xaxis, yaxis=yaxis,
                             hovertemplate="step %{x}<br>%{y:.4g}<extra>" + html.escape(name) + "</extra>"))
    return traces


def event_shapes(events: Sequence[Mapping[str, Any]], tasks: Sequence[str] | None = None,
                 short: Mapping[str, str] | None = None) -> tuple[list[dict], list[dict]]:
    """Vertical lines (and their labels) at each task-weight change: ``(shapes, annotations)``
    for a figure's layout; the label lists the weights that changed, e.g. ``w: seg 1→2``."""
    shapes, notes = [], []
    for ev in events:
        if ev.get("kind") != "weights":
            continue
        step = ev["step"]
        payload = ev.get("payload") or {}
        old, new = payload.get("old", {}), payload.get("new", {})
        changed = [t for t in (tasks or new) if t in new and float(new[t]) != float(old.get(t, np.nan))]
        parts = [f"{(short or {}).get(t, t[:4])} {_number_text(old.get(t))}→{_number_text(new[t])}" for t in changed]
        shapes.append(dict(type="line", xref="x", yref="paper", x0=step, x1=step, y0=0, y1=1,
                           line=dict(color=EVENT_COLOR, width=1, dash="dot")))
        notes.append(dict(x=step, y=1, xref="x", yref="paper", yanchor="top", xanchor="left", showarrow=False,
                          text="w: " + (", ".join(parts) if parts else "changed"), font=dict(size=10, color="#555"),
                          hovertext=f"step {step}: task weights " + ", ".join(f"{t} {_number_text(old.get(t))} → {_number_text(new[t])}"
                                                                            for t in changed)))
    return shapes, notes


def _padded(v: np.ndarray, pad: float = 0.08, top: float | None = None) -> list[float] | None:
    """An axis range around ``v`` with room for the points' text labels (placed above them)."""
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else max(abs(hi), 1e-3) * 0.1
    return [lo - span * pad, hi + span * (pad if top is None else top)]


def _number_text(v: Any) -> str:
    return "?" if v is None else f"{float(v):g}"


def _base_layout(title: str, height: int, uirevision: str) -> dict:
    return dict(title=dict(text=title, x=0, xanchor="left", font=dict(size=14)), height=height,
                margin=dict(l=50, r=10, t=56, b=36), uirevision=uirevision, hovermode="x unified",
                legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right", font=dict(size=10)))


def task_figure(cache: MetricCache, meta: TaskMeta, smoothing: float, log_y: bool = False,
                events: Sequence[Mapping[str, Any]] = (), color: str = PALETTE[0],
                uirevision: str = "") -> go.Figure:
    """One task's panel: training loss (raw faint + EMA) and validation loss on top, validation
    metrics below, on a shared step axis; weight changes as dotted vertical lines."""
    t = meta.name
    traces: list[dict] = []
    steps, values = cache.get("train", f"loss/{t}")
    traces += smoothed_traces(steps, values, smoothing, "train", color)
    vs, vv = cache.get("val", f"loss/{t}")
    if len(vv):
        vs, vv = downsample(vs, vv, MAX_POINTS)
        traces.append(_scatter(x=vs, y=vv, mode="lines+markers", name="val",
                                 line=dict(color=color, width=1.5, dash="dash"), marker=dict(size=5)))
    metric_keys = [k for k in cache.keys("val") if k.startswith(f"{t}/")]
    metric_keys.sort(key=lambda k: (k != f"{t}/{meta.primary}", k))  # primary first
    for i, key in enumerate(metric_keys):
        ms, mv = downsample(*cache.get("val", key), MAX_POINTS)
        primary = i == 0 and key == f"{t}/{meta.primary}"
        arrow = ("↑" if meta.higher_is_better else "↓") if primary else ""
        traces.append(_scatter(x=ms, y=mv, mode="lines+markers", name=f"{key.split('/', 1)[1]}{arrow}",
                                 xaxis="x2", yaxis="y2", marker=dict(size=5 if primary else 3),
                                 line=dict(color=METRIC_COLORS[i % len(METRIC_COLORS)], width=2 if primary else 1,
                                           dash="solid" if primary else "dot")))
    layout = _base_layout(meta.label, 360, uirevision)
    shapes, notes = event_shapes(events)  # every change shows on every task: it shifts the balance of all
    layout.update(
        xaxis=dict(domain=[0, 1], anchor="y", matches="x2", showticklabels=False),
        yaxis=dict(domain=[0.45, 1], title=dict(text="loss", font=dict(size=11)), type="log" if log_y else "linear"),
        xaxis2=dict(domain=[0, 1], anchor="y2", title=dict(text="step", font=dict(size=11))),
        yaxis2=dict(domain=[0, 0.36], title=dict(text="val", font=dict(size=11))),
        shapes=shapes, annotations=notes,
    )
    if not metric_keys:
        # an empty trace keeps the lower panel (and its step axis) drawn; the note is placed in
        # paper coordinates: one on an axis without data would stretch the loss axis instead
        traces.append(_scatter(x=[], y=[], xaxis="x2", yaxis="y2", showlegend=False, hoverinfo="skip"))
        layout["yaxis2"].update(showticklabels=False, showgrid=False)
        layout["annotations"] = notes + [dict(text="validation metrics appear after the first evaluation",
                                              xref="paper", yref="paper", x=0.5, y=0.18, showarrow=False,
                                              font=dict(size=11, color="#888"))]
    return figure(traces, layout)


MAX_LEGEND = 12  # tasks a weights chart names in its legend


def weights_figure(cache: MetricCache, tasks: Sequence[str], events: Sequence[Mapping[str, Any]] = (),
                   task_colors: Mapping[str, str] | None = None, uirevision: str = "") -> go.Figure:
    """The effective per-task weights the weighting method used at each step."""
    cols = task_colors or colors(tasks)
    traces = []
    for t in tasks:
        s, v = cache.get("train", f"weight/{t}")
        if len(v):
            s, v = downsample(s, v, MAX_POINTS)
            traces.append(_scatter(x=s, y=v, mode="lines", name=t, line=dict(color=cols[t], width=2)))
    layout = _base_layout("Effective task weights", 300, uirevision)
    shapes, notes = event_shapes(events, tasks)
    layout.update(xaxis=dict(title=dict(text="step", font=dict(size=11))), yaxis=dict(title=dict(text="weight")),
                  shapes=shapes, annotations=notes)
    if len(traces) > MAX_LEGEND:  # a legend of forty tasks covers the chart: a task's name is on hover only
        layout.update(showlegend=False)
    return figure(traces, layout)


def total_loss_figure(cache: MetricCache, smoothing: float, log_y: bool = False,
                      events: Sequence[Mapping[str, Any]] = (), uirevision: str = "") -> go.Figure:
    """The weighted total training loss (what the optimiser minimises)."""
    s, v = cache.get("train", "loss/total")
    traces = smoothed_traces(s, v, smoothing, "total loss", "#444444")
    layout = _base_layout("Total (weighted) training loss", 300, uirevision)
    shapes, notes = event_shapes(events)
    layout.update(xaxis=dict(title=dict(text="step", font=dict(size=11))),
                  yaxis=dict(type="log" if log_y else "linear", title=dict(text="loss")),
                  shapes=shapes, annotations=notes, showlegend=False)
    return figure(traces, layout)


def _short(meta: Mapping[str, TaskMeta], task: str) -> str:
    return meta.get(task, TaskMeta(task)).label


# -- gradient conflict ------------------------------------------------------------------------
def task_pairs(tasks: Sequence[str], keys: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(a, b, key)`` for every recorded pair ``gradcos/<a>|<b>`` (either order), in task order."""
    have = set(keys)
    out = []
    for i, a in enumerate(tasks):
        for b in tasks[i + 1:]:
            key = next((k for k in (f"{GRAD_COS}{a}|{b}", f"{GRAD_COS}{b}|{a}") if k in have), None)
            if key is not None:
                out.append((a, b, key))
    return out


def latest_gradstats(cache: MetricCache) -> tuple[int | None, dict[str, float]]:
    """The gradient statistics of the last step that recorded them: ``(step, {key: value})``,
    ``(None, {})`` when no ``gradcos/`` row has arrived yet."""
    keys = [k for k in cache.keys("train") if k.startswith((GRAD_COS, GRAD_NORM))]
    series = {k: cache.get("train", k) for k in keys}
    cos_steps = [int(s[-1]) for k, (s, _) in series.items() if k.startswith(GRAD_COS) and len(s)]
    if not cos_steps:
        return None, {}
    last = max(cos_steps)
    stats = {}
    for k, (s, v) in series.items():
        hit = np.flatnonzero(s == last)
        if hit.size:
            stats[k] = float(v[hit[-1]])
    return last, stats


def cosine_heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str], step: int | None = None,
                   uirevision: str = "") -> go.Figure:
    """The tasks' pairwise gradient cosines as an annotated heatmap on a fixed -1..1 diverging
    scale (red: conflict, blue: agreement); a pair never recorded stays blank."""
    z = np.asarray(matrix, dtype=float)  # (T, T)
    text = [["" if not np.isfinite(v) else f"{v:+.2f}" for v in row] for row in z]
    trace = {"type": "heatmap", "z": [[None if not np.isfinite(v) else float(v) for v in row] for row in z],
             "x": list(labels), "y": list(labels), "zmin": -1.0, "zmax": 1.0, "zmid": 0.0,
             "colorscale": COSINE_SCALE, "text": text, "texttemplate": "%{text}", "textfont": {"size": 13},
             "xgap": 2, "ygap": 2, "hovertemplate": "%{y} · %{x}<br>cosine %{z:.3f}<extra></extra>",
             "colorbar": {"title": {"text": "cos", "side": "right"}, "tickvals": [-1, -0.5, 0, 0.5, 1],
                          "thickness": 12, "len": 0.9}}
    title = "Gradient cosine" + (f" at step {step:,}" if step is not None else "")
    layout = _base_layout(title, 340, uirevision)
    layout.update(hovermode="closest", margin=dict(l=10, r=10, t=56, b=10),
                  xaxis=dict(side="bottom", tickangle=-30, automargin=True),  # task names are long: slanted
                  yaxis=dict(autorange="reversed", automargin=True, scaleanchor="x", constrain="domain"))
    return figure([trace], layout)


def gradcos_figure(cache: MetricCache, tasks: Sequence[str], meta: Mapping[str, TaskMeta] | None = None,
                   smoothing: float = 0.0, uirevision: str = "") -> go.Figure:
    """Each pair's gradient cosine over the steps that recorded it; the conflict zone (below 0)
    is shaded and the zero line drawn, so a pair turning negative stands out."""
    meta = meta or {}
    pairs = task_pairs(tasks, cache.keys("train"))
    pair_colors = colors([key for _, _, key in pairs])
    traces: list[dict] = []
    for a, b, key in pairs:
        s, v = cache.get("train", key)
        name = f"{_short(meta, a)} ↔ {_short(meta, b)}"
        traces += smoothed_traces(s, v, smoothing if len(v) > 2 else 0.0, name, pair_colors[key])
    layout = _base_layout("Gradient cosine between tasks over time", 340 + 20 * ((len(pairs) + 2) // 3), uirevision)
    layout.update(
        # up to six pairs with long names: the legend goes under the plot, where it can wrap
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0, xanchor="left", font=dict(size=10)),
        margin=dict(l=50, r=10, t=40, b=40),
        xaxis=dict(title=dict(text="step", font=dict(size=11))),
        yaxis=dict(range=[-1.05, 1.05], zeroline=False, title=dict(text="cosine", font=dict(size=11))),
        shapes=[dict(type="rect", xref="paper", yref="y", x0=0, x1=1, y0=-1.05, y1=0, line=dict(width=0),
                     fillcolor="rgba(214,39,40,0.07)", layer="below"),
                dict(type="line", xref="paper", yref="y", x0=0, x1=1, y0=0, y1=0,
                     line=dict(color="#444", width=1.5))],
        annotations=[dict(text="conflict (cos < 0)", xref="paper", yref="y", x=0.01, y=-1.0, xanchor="left",
                          yanchor="bottom", showarrow=False, font=dict(size=10, color="#b2182b"))],
    )
    return figure(traces, layout)


def gradnorm_figure(cache: MetricCache, tasks: Sequence[str], task_colors: Mapping[str, str] | None = None,
                    meta: Mapping[str, TaskMeta] | None = None, uirevision: str = "") -> go.Figure:
    """Each task's gradient norm on the shared parameters; log scale when every value is positive
    (norms of different tasks often differ by orders of magnitude)."""
    cols = task_colors or colors(tasks)
    traces, seen = [], []
    for t in tasks:
        s, v = cache.get("train", f"{GRAD_NORM}{t}")
        if len(v):
            seen.append(v)
            s, v = downsample(s, v, MAX_POINTS)
            traces.append(_scatter(x=s, y=v, mode="lines+markers" if len(v) < 60 else "lines",
                                   name=(meta or {}).get(t, TaskMeta(t)).label, marker=dict(size=4),
                                   line=dict(color=cols[t], width=2)))
    values = np.concatenate(seen) if seen else np.zeros(0)
    finite = values[np.isfinite(values)]
    log = finite.size > 0 and bool((finite > 0).all())
    layout = _base_layout("Gradient norm per task (shared parameters)", 300, uirevision)
    layout.update(xaxis=dict(title=dict(text="step", font=dict(size=11))),
                  yaxis=dict(type="log" if log else "linear", dtick=1 if log else None,  # log: powers of ten only
                             title=dict(text="‖g‖" + (" (log)" if log else ""), font=dict(size=11))))
    return figure(traces, layout)


def compare_figure(series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, smoothing: float = 0.0,
                   log_y: bool = False, run_colors: Mapping[str, str] | None = None, y_title: str = "",
                   height: int = 320) -> go.Figure:
    """One curve per run (``series``: run label -> (steps, values)), smoothed when asked."""
    cols = run_colors or colors(list(series))
    traces: list[dict] = []
    for label, (s, v) in series.items():
        if len(v) > 1 and smoothing > 0:
            traces += smoothed_traces(np.asarray(s), np.asarray(v, dtype=float), smoothing, label, cols[label])
        elif len(v):
            s2, v2 = downsample(s, v, MAX_POINTS)
            traces.append(_scatter(x=s2, y=v2, mode="lines+markers" if len(v2) < 60 else "lines", name=label,
                                     line=dict(color=cols[label], width=2), marker=dict(size=5)))
    layout = _base_layout(title, height + 20 * ((len(series) + 1) // 2), "compare")
    # run names are long: the legend goes under the plot, where it can wrap without hiding the title
    layout.update(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0, xanchor="left", font=dict(size=10)),
                  margin=dict(l=50, r=10, t=40, b=40),
                  xaxis=dict(title=dict(text="step", font=dict(size=11))),
                  yaxis=dict(type="log" if log_y else "linear", title=dict(text=y_title, font=dict(size=11))))
    return figure(traces, layout)


def pareto_figure(names: Sequence[str], x: Sequence[float], y: Sequence[float], x_title: str, y_title: str,
                  maximize_x: bool = True, maximize_y: bool = True,
                  highlight: str | None = None) -> go.Figure:
    """One point per run, the Pareto front (each axis in its own direction) drawn as a line."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    on = pareto_front(xs, ys, maximize_x, maximize_y)
    fx, fy = front_line(xs, ys, on)
    traces = [
        _scatter(x=fx, y=fy, mode="lines", name="Pareto front", line=dict(color="#d62728", width=2, dash="dash"),
                   hoverinfo="skip"),
        _scatter(x=xs[~on], y=ys[~on], mode="markers+text", name="dominated", text=np.asarray(names)[~on],
                   textposition="top center", marker=dict(size=10, color="#9aa5b1"), cliponaxis=False),
        _scatter(x=xs[on], y=ys[on], mode="markers+text", name="on the front", text=np.asarray(names)[on],
                   textposition="top center", marker=dict(size=12, color="#d62728", symbol="diamond"), cliponaxis=False),
    ]
    if highlight is not None and highlight in names:
        i = list(names).index(highlight)
        traces.append(_scatter(x=[xs[i]], y=[ys[i]], mode="markers", name="baseline",
                                 marker=dict(size=18, color="rgba(0,0,0,0)", line=dict(color="#222", width=2))))
    arrow_x = "→ better" if maximize_x else "← better"
    arrow_y = "↑ better" if maximize_y else "↓ better"
    layout = _base_layout(f"{y_title} against {x_title}", 460, "pareto")
    layout.update(hovermode="closest", margin=dict(l=60, r=20, t=40, b=90),
                  legend=dict(orientation="h", yanchor="top", y=-0.18, x=0.5, xanchor="center", font=dict(size=10)),
                  xaxis=dict(title=dict(text=f"{x_title} ({arrow_x})"), range=_padded(xs)),
                  yaxis=dict(title=dict(text=f"{y_title} ({arrow_y})"), range=_padded(ys, top=0.18)))
    return figure(traces, layout)
