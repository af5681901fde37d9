"""The playground's figure: the paths in parameter space over the average loss's contours, with the
Pareto set and the average optimum, beside the same paths in loss space with the Pareto front.

The two views are linked by the step slider: the same step is marked on every path in both, and
in parameter space each path carries arrows at that step: every task's descent direction
``-g_t`` and the update the method chose. Hovering a point of a path gives the same numbers.
An invisible grid over the parameter space takes clicks (a new starting point).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from mtl_core.playground.analysis import Reference
from mtl_core.playground.problems import Problem
from mtl_core.playground.simulate import Paths, task_gradients
from ui.charts import PALETTE, figure

MAX_POINTS = 120  # points drawn per path (every k-th step, the last always): the hover text is most of the JSON
CLICK_GRID = 41
TASK_COLORS = ("#d62728", "#1f77b4", "#2ca02c")
CLICK_NAME = "click to add a start"


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(methods)}


def _subsample(n: int) -> np.ndarray:
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
    return idx


def gradients_at(problem: Problem, paths: Paths, scales: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Every task's gradient at steps ``idx`` of every path: ``(M, S, len(idx), T, 2)``."""
    pos = paths.positions[:, :, idx]  # (M, S, K, 2)
    _, g = task_gradients(problem, np.nan_to_num(pos.reshape(-1, 2)), scales)
    return g.reshape(*pos.shape[:3], len(paths.tasks), 2)


def _path_traces(paths: Paths, k: int, color: str, grads: np.ndarray | None, idx: np.ndarray,
                 axes: tuple[str, str], loss_axes: tuple[int, int], show_legend: bool) -> list[dict]:
    """Method ``k``'s paths in both views (one trace per view, starts separated by gaps); ``grads``
    are the task gradients at steps ``idx``, for the hover (None: no hover text, a growing frame)."""
    method, tasks = paths.methods[k], paths.tasks
    xs, ys, lx, ly, data = [], [], [], [], []
    for i in range(len(paths.starts)):
        pos, loss = paths.positions[k, i, idx], paths.losses[k, i, idx]
        xs += [*pos[:, 0], None]
        ys += [*pos[:, 1], None]
        lx += [*loss[:, loss_axes[0]], None]
        ly += [*loss[:, loss_axes[1]], None]
        if grads is None:
            continue
        for j, n in enumerate(idx):
            w = paths.weights[k, i, min(n, paths.steps - 1)] if paths.steps else np.zeros(len(tasks))
            u = paths.updates[k, i, min(n, paths.steps - 1)] if paths.steps else np.zeros(2)
            g = grads[k, i, j]
            data.append(f"start {i + 1}, step {n}<br>weights " + ", ".join(f"{t} {v:.3g}" for t, v in zip(tasks, w))
                        + f"<br>update ({u[0]:.3g}, {u[1]:.3g})<br>gradients "
                        + "; ".join(f"{t} ({v[0]:.3g}, {v[1]:.3g})" for t, v in zip(tasks, g)))
        data.append(None)
    hover = f"<b>{method}</b><br>%{{text}}<extra></extra>" if grads is not None else f"<b>{method}</b><extra></extra>"
    line = {"color": color, "width": 2}
    return [
        {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": method, "legendgroup": method,
         "line": line, **({"text": data} if grads is not None else {}), "hovertemplate": hover, "xaxis": axes[0],
         "yaxis": axes[1], "showlegend": show_legend},
        {"type": "scatter", "mode": "lines", "x": lx, "y": ly, "name": method, "legendgroup": method, "line": line,
         "hovertemplate": f"<b>{method}</b><br>losses (%{{x:.3g}}, %{{y:.3g}})<extra></extra>", "xaxis": "x2",
         "yaxis": "y2", "showlegend": False},
        {"type": "scatter", "mode": "markers", "x": paths.positions[k, :, -1, 0], "y": paths.positions[k, :, -1, 1],
         "marker": {"color": color, "size": 10, "symbol": "diamond", "line": {"color": "white", "width": 1}},
         "name": f"{method} ends", "legendgroup": method, "showlegend": False, "hoverinfo": "skip",
         "xaxis": axes[0], "yaxis": axes[1]},
        {"type": "scatter", "mode": "markers", "x": paths.losses[k, :, -1, loss_axes[0]],
         "y": paths.losses[k, :, -1, loss_axes[1]], "marker": {"color": color, "size": 10, "symbol": "diamond"},
         "legendgroup": method, "showlegend": False, "hoverinfo": "skip", "xaxis": "x2", "yaxis": "y2"},
    ]


def arrows(paths: Paths, grads: np.ndarray, step: int, box: tuple[float, float, float, float],
           colors: dict[str, str]) -> list[dict]:
    """``grads (M, S, T, 2)``: the task gradients at ``step``."""
    """Annotations at ``step`` of every path: each task's ``-g_t`` and the method's update ``-d``,
    all scaled by one factor per point so their lengths compare (the longest 12% of the box)."""
    length = 0.12 * max(box[1] - box[0], box[3] - box[2])
    out = []
    n = min(step, paths.steps)
    for k, method in enumerate(paths.methods):
        for i in range(len(paths.starts)):
            x, y = paths.positions[k, i, n]
            g = grads[k, i]  # (T, 2)
            d = paths.updates[k, i, min(n, paths.steps - 1)] if paths.steps else np.zeros(2)
            vecs = [(-g[t], TASK_COLORS[t % 3], 1.5) for t in range(len(paths.tasks))] + [(-d, colors[method], 3)]
            big = max(float(np.linalg.norm(v)) for v, _, _ in vecs)
            if not np.isfinite([x, y, big]).all() or big <= 0:
                continue
            for v, c, width in vecs:
                ax, ay = x + v[0] / big * length, y + v[1] / big * length
                out.append({"x": ax, "y": ay, "ax": x, "ay": y, "xref": "x", "yref": "y", "axref": "x", "ayref": "y",
                            "showarrow": True, "arrowhead": 2, "arrowsize": 1, "arrowwidth": width, "arrowcolor": c,
                            "text": ""})
    return out


def playground_figure(problem: Problem, ref: Reference, grid: tuple[np.ndarray, np.ndarray, np.ndarray],
                      paths: Paths | None, starts: np.ndarray, scales: np.ndarray | None = None,
                      step: int | None = None, loss_axes: tuple[int, int] = (0, 1), height: int = 560,
                      clickable: bool = True, uirevision: str = "playground", hover: bool = True) -> go.Figure:
    """The two linked views; ``paths`` None draws the problem alone (a prediction not yet made).
    ``hover`` False leaves out each point's hover text (the weights, update and gradients), most of
    the figure's size: for the frames of paths still growing."""
    scales = np.ones(len(problem.tasks)) if scales is None else np.asarray(scales, dtype=np.float64)
    xs, ys, mean = grid
    x0, x1, y0, y1 = problem.box
    traces: list[dict] = [
        {"type": "contour", "x": xs, "y": ys, "z": mean, "colorscale": "Viridis", "opacity": 0.55, "ncontours": 24,
         "showscale": False, "hovertemplate": "(%{x:.2f}, %{y:.2f}) average loss %{z:.3g}<extra></extra>",
         "contours": {"coloring": "fill", "showlines": True}, "line": {"width": 0.5, "color": "rgba(255,255,255,0.5)"},
         "xaxis": "x", "yaxis": "y", "name": "average loss", "showlegend": False},
    ]
    pset = ref.pareto_set
    if ref.region:
        closed = np.vstack([pset, pset[:1]])
        traces.append({"type": "scatter", "mode": "lines", "x": closed[:, 0], "y": closed[:, 1], "fill": "toself",
                       "fillcolor": "rgba(120,120,120,0.35)", "line": {"color": "#555", "width": 2},
                       "name": "Pareto set", "hoverinfo": "name", "xaxis": "x", "yaxis": "y"})
    else:
        mode = "markers" if ref.from_grid or len(pset) == 1 else "lines"
        traces.append({"type": "scatter", "mode": mode, "x": pset[:, 0], "y": pset[:, 1], "name": "Pareto set",
                       "line": {"color": "rgba(90,90,90,0.8)", "width": 7},
                       "marker": {"color": "rgba(90,90,90,0.8)", "size": 6 if ref.from_grid else 12},
                       "hoverinfo": "name", "xaxis": "x", "yaxis": "y"})
    front = ref.pareto_front
    order = np.argsort(front[:, loss_axes[0]]) if not ref.region else np.arange(len(front))
    traces.append({"type": "scatter", "mode": "markers" if ref.from_grid or ref.region or len(front) == 1 else "lines",
                   "x": front[order, loss_axes[0]], "y": front[order, loss_axes[1]], "name": "Pareto front",
                   "line": {"color": "rgba(90,90,90,0.8)", "width": 7}, "marker": {"color": "rgba(90,90,90,0.6)", "size": 6},
                   "hoverinfo": "name", "xaxis": "x2", "yaxis": "y2", "showlegend": False})
    opt = ref.average_optimum
    traces.append({"type": "scatter", "mode": "markers", "x": [opt[0]], "y": [opt[1]], "name": "average optimum",
                   "marker": {"symbol": "star", "size": 18, "color": "black", "line": {"color": "white", "width": 1}},
                   "hovertemplate": "average-loss optimum (%{x:.3g}, %{y:.3g})<extra></extra>", "xaxis": "x", "yaxis": "y"})
    traces.append({"type": "scatter", "mode": "markers+text", "x": starts[:, 0], "y": starts[:, 1], "name": "starts",
                   "text": [str(i + 1) for i in range(len(starts))], "textposition": "top right",
                   "marker": {"size": 11, "color": "white", "line": {"color": "black", "width": 2}},
                   "hovertemplate": "start %{text} (%{x:.3g}, %{y:.3g})<extra></extra>", "xaxis": "x", "yaxis": "y"})
    annotations: list[dict] = []
    if paths is not None:
        colors = method_colors(paths.methods)
        idx = _subsample(paths.positions.shape[2])
        grads = gradients_at(problem, paths, scales, idx) if hover else None
        for k, method in enumerate(paths.methods):
            traces += _path_traces(paths, k, colors[method], grads, idx, ("x", "y"), loss_axes, True)
        if step is not None and paths.steps:
            n = min(step, paths.steps)
            pos = paths.positions[:, :, n].reshape(-1, 2)
            loss = paths.losses[:, :, n].reshape(-1, len(paths.tasks))
            marker = {"size": 9, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 2}}
            traces.append({"type": "scatter", "mode": "markers", "x": pos[:, 0], "y": pos[:, 1], "marker": marker,
                           "name": f"step {n}", "hoverinfo": "skip", "xaxis": "x", "yaxis": "y"})
            traces.append({"type": "scatter", "mode": "markers", "x": loss[:, loss_axes[0]], "y": loss[:, loss_axes[1]],
                           "marker": marker, "showlegend": False, "hoverinfo": "skip", "xaxis": "x2", "yaxis": "y2"})
            at = gradients_at(problem, paths, scales, np.array([n]))[:, :, 0]
            annotations = arrows(paths, at, n, problem.box, colors)
    if clickable:
        gx, gy = np.meshgrid(np.linspace(x0, x1, CLICK_GRID), np.linspace(y0, y1, CLICK_GRID))
        traces.append({"type": "scatter", "mode": "markers", "x": gx.ravel(), "y": gy.ravel(), "name": CLICK_NAME,
                       "marker": {"size": 9, "color": "rgba(0,0,0,0)"}, "hoverinfo": "none", "showlegend": False,
                       "xaxis": "x", "yaxis": "y"})
    tx, ty = problem.tasks[loss_axes[0]], problem.tasks[loss_axes[1]]
    layout = {
        "height": height, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "uirevision": uirevision,
        "hovermode": "closest", "clickmode": "event+select", "dragmode": "pan",
        "legend": {"orientation": "h", "y": -0.08},
        "xaxis": {"domain": [0.0, 0.47], "range": [x0, x1], "title": {"text": "x"}, "showgrid": False},
        "yaxis": {"domain": [0.0, 1.0], "range": [y0, y1], "title": {"text": "y"}, "scaleanchor": "x", "showgrid": False},
        "xaxis2": {"domain": [0.55, 1.0], "title": {"text": f"loss {tx}"}, "anchor": "y2"},
        "yaxis2": {"domain": [0.0, 1.0], "title": {"text": f"loss {ty}"}, "anchor": "x2"},
        "annotations": [
            {"text": "<b>Parameters</b>: paths over the average loss", "x": 0.0, "xanchor": "left", "y": 1.06,
             "xref": "paper", "yref": "paper", "showarrow": False},
            {"text": "<b>Losses</b>: the same paths, and the Pareto front", "x": 0.55, "xanchor": "left", "y": 1.06,
             "xref": "paper", "yref": "paper", "showarrow": False},
            *annotations],
    }
    return figure(traces, layout)


def clicked_point(event, fig: go.Figure) -> tuple[float, float] | None:
    """The point a click on the invisible grid selected (Streamlit's plotly selection event), if any."""
    try:
        points = event.selection.points if hasattr(event, "selection") else event["selection"]["points"]
    except (KeyError, TypeError, AttributeError):
        return None
    names = [t.name for t in fig.data]
    for p in points or []:
        curve = p.get("curve_number", p.get("curveNumber"))
        if curve is not None and curve < len(names) and names[curve] == CLICK_NAME:
            return float(p["x"]), float(p["y"])
    return None
