"""Plotly figures of a study: each level's curves as a mean over seeds with a band, the trade-off
between two tasks with every level's 95% CI and the Pareto front, and parallel coordinates of
the factors against the metrics, one line per finished run.

Plotly and numpy only, no Streamlit, no torch. The summary they read is
``mtl_core.studies.summary.StudySummary`` (taken as it is, not imported, so this module stays
light): its levels, their intervals and seeds' values.
"""
from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from mtl_core.scores import finite_or_none
from ui.charts import MAX_POINTS, PALETTE, _base_layout, _padded, _rgba, figure
from ui.metrics import downsample_indices, ema

Curve = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # (steps, mean, std, n), as summary.level_curves gives
BASELINE_COLOR = "#7f7f7f"


def value_text(v: Any) -> str:
    """A factor's value as a person reads it: ``ew``, ``0.3``, ``on``, ``classification+depth``."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


def short_label(level: Mapping[str, Any]) -> str:
    """A level by its values only (``ew, mtan``); the factors' names go in the legend's title."""
    return ", ".join(value_text(v) for v in level.values()) or "base config"


def factor_title(factors: Sequence[str]) -> str:
    return ", ".join(factors)


def level_colors(labels: Sequence[str]) -> dict[str, str]:
    """One colour per level, in the study's order (the same in every chart of the page)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def band_figure(curves: Mapping[str, Curve], title: str, y_title: str, colors: Mapping[str, str],
                baselines: Mapping[str, Curve] | None = None, legend_title: str = "", uirevision: str = "",
                log_y: bool = False, ahead: Mapping[str, Curve] | None = None, smoothing: float = 0.0) -> go.Figure:
    """Per level (``curves``: label -> (steps, mean, std, n)) the mean over seeds as a line and
    mean ± std as a shaded band of the level's colour; ``baselines`` the same in grey, dashed.
    ``ahead``: per level, the seeds that have gone further than the others (a level's next seed
    has just started), drawn dotted beyond the steps all its seeds share. ``smoothing``: an EMA
    over the mean and the std (for per-step training losses)."""
    traces: list[dict] = []
    for label, (steps, mean, _std, n) in (ahead or {}).items():
        if len(steps) == 0:
            continue
        idx = downsample_indices(mean, MAX_POINTS)
        m = ema(np.asarray(mean, dtype=float), smoothing)[idx]
        traces.append({"type": "scatter", "x": np.asarray(steps)[idx], "y": m, "mode": "lines", "showlegend": False,
                       "name": f"{label} ({n} seed{'s' if n != 1 else ''} ahead)", "legendgroup": label,
                       "line": {"color": colors.get(label, PALETTE[0]), "width": 1.5, "dash": "dot"},
                       "hovertemplate": f"<b>{html.escape(label)}</b>, the {n} seed{'s' if n != 1 else ''} ahead"
                                        "<br>step %{x}<br>%{y:.4g}<extra></extra>"})
    items = [(label, c, colors.get(label, PALETTE[0]), False) for label, c in curves.items()]
    items += [(label, c, BASELINE_COLOR, True) for label, c in (baselines or {}).items()]
    for label, (steps, mean, std, n), color, baseline in items:
        if len(steps) == 0:
            continue
        idx = downsample_indices(mean, MAX_POINTS)
        x = np.asarray(steps)[idx]
        m = ema(np.asarray(mean, dtype=float), smoothing)[idx]
        s = np.nan_to_num(ema(np.asarray(std, dtype=float), smoothing)[idx])
        name = html.escape(label)
        if n > 1:  # one seed has no spread: no band
            traces.append({"type": "scatter", "x": np.r_[x, x[::-1]], "y": np.r_[m + s, (m - s)[::-1]],
                           "fill": "toself", "fillcolor": _rgba(color, 0.12 if baseline else 0.2),
                           "line": {"width": 0}, "mode": "lines", "hoverinfo": "skip", "showlegend": False,
                           "legendgroup": label, "name": f"{label} band"})
        traces.append({"type": "scatter", "x": x, "y": m, "name": label, "legendgroup": label,
                       "mode": "lines+markers" if len(x) < 40 else "lines", "marker": {"size": 5},
                       "line": {"color": color, "width": 1.5 if baseline else 2, "dash": "dash" if baseline else "solid"},
                       "customdata": s, "hovertemplate": f"<b>{name}</b><br>step %{{x}}<br>%{{y:.4g}} ± %{{customdata:.3g}}"
                                                         f" ({n} seed{'s' if n != 1 else ''})<extra></extra>"})
    layout = _base_layout(title, 360, uirevision)
    layout.update(hovermode="closest", margin={"l": 50, "r": 10, "t": 40, "b": 40}, showlegend=True,
                  legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "xanchor": "left",
                          "font": {"size": 10}, "title": {"text": legend_title, "font": {"size": 10}}},
                  xaxis={"title": {"text": "step", "font": {"size": 11}}},
                  yaxis={"title": {"text": y_title, "font": {"size": 11}}, "type": "log" if log_y else "linear"})
    if not traces:  # no empty grid with made-up ranges: a note where the curves will be
        layout["xaxis"].update(visible=False)
        layout["yaxis"].update(visible=False)
        layout["annotations"] = [{"text": "no points yet: they appear after the first evaluation", "xref": "paper",
                                  "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
                                  "font": {"size": 11, "color": "#888"}}]
    return figure(traces, layout)


def tradeoff_figure(summary: Any, tx: str, ty: str, on_front: Sequence[bool], labels: Mapping[str, str],
                    colors: Mapping[str, str], task_titles: Mapping[str, str] | None = None) -> go.Figure:
    """Each level at its two tasks' mean primary metrics with 95% CI error bars (none for a level
    with one seed), the levels on the Pareto front joined by a line, each point labelled; the
    single-task baselines' means as dotted lines where the study has them."""
    titles = task_titles or {}
    hib = summary.higher_is_better
    rows = []
    for lv, front in zip(summary.levels, on_front, strict=False):
        x, y = lv.metrics.get(tx), lv.metrics.get(ty)
        if x is None or y is None or not (math.isfinite(x.mean) and math.isfinite(y.mean)):
            continue
        rows.append((lv, x, y, bool(front)))
    traces: list[dict] = []
    front = sorted((r for r in rows if r[3]), key=lambda r: r[1].mean)
    if front:
        traces.append({"type": "scatter", "x": [r[1].mean for r in front], "y": [r[2].mean for r in front],
                       "mode": "lines", "name": "Pareto front", "hoverinfo": "skip",
                       "line": {"color": "#d62728", "width": 2, "dash": "dash"}})
    for lv, x, y, on in rows:
        label = labels.get(lv.label, lv.label)
        traces.append({
            "type": "scatter", "x": [x.mean], "y": [y.mean], "mode": "markers+text", "name": label,
            "text": [label], "textposition": "top center", "cliponaxis": False, "showlegend": False,
            "marker": {"size": 13 if on else 10, "color": colors.get(lv.label, PALETTE[0]),
                       "symbol": "diamond" if on else "circle", "line": {"color": "#d62728" if on else "white", "width": 1.5}},
            "error_x": {"type": "data", "array": [finite_or_none(x.half_width) or 0.0],
                        "visible": math.isfinite(x.half_width), "thickness": 1.2, "width": 3},
            "error_y": {"type": "data", "array": [finite_or_none(y.half_width) or 0.0],
                        "visible": math.isfinite(y.half_width), "thickness": 1.2, "width": 3},
            "hovertemplate": f"<b>{html.escape(lv.label)}</b><br>{html.escape(tx)} {x}<br>{html.escape(ty)} {y}"
                             f"<br>{'on the Pareto front' if on else 'dominated'}<extra></extra>"})
    shapes, notes = [], []
    for axis, task in (("x", tx), ("y", ty)):
        base = summary.baselines.get(task)
        if base is None or not math.isfinite(base.mean):
            continue
        if axis == "x":
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": base.mean, "x1": base.mean, "y0": 0,
                           "y1": 1, "line": {"color": BASELINE_COLOR, "width": 1, "dash": "dot"}})
            notes.append({"x": base.mean, "y": 0, "xref": "x", "yref": "paper", "yanchor": "bottom", "xanchor": "left",
                          "showarrow": False, "text": f"{task} alone", "font": {"size": 10, "color": BASELINE_COLOR}})
        else:
            shapes.append({"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": base.mean,
                           "y1": base.mean, "line": {"color": BASELINE_COLOR, "width": 1, "dash": "dot"}})
            notes.append({"x": 1, "y": base.mean, "xref": "paper", "yref": "y", "yanchor": "bottom", "xanchor": "right",
                          "showarrow": False, "text": f"{task} alone", "font": {"size": 10, "color": BASELINE_COLOR}})
    xs = _span([r[1] for r in rows], [s["x0"] for s in shapes if s["xref"] == "x"])
    ys = _span([r[2] for r in rows], [s["y0"] for s in shapes if s["yref"] == "y"])
    x_title = f"{titles.get(tx, tx)} {summary.primary.get(tx, '')} ({'→' if hib.get(tx, True) else '←'} better)"
    y_title = f"{titles.get(ty, ty)} {summary.primary.get(ty, '')} ({'↑' if hib.get(ty, True) else '↓'} better)"
    layout = _base_layout(f"Trade-off: {titles.get(ty, ty)} against {titles.get(tx, tx)}", 460, "study-tradeoff")
    layout.update(hovermode="closest", margin={"l": 60, "r": 20, "t": 40, "b": 60}, shapes=shapes, annotations=notes,
                  legend={"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0.5, "xanchor": "center"},
                  xaxis={"title": {"text": x_title}, "range": _padded(xs)},
                  yaxis={"title": {"text": y_title}, "range": _padded(ys, top=0.18)})
    return figure(traces, layout)


def _span(intervals: list[Any], extra: list[float]) -> np.ndarray:
    """The values an axis must show: the means, the baselines and the error bars' ends, these cut
    to one span of the means on either side, so that the wide intervals of a few seeds run off
    the plot instead of squeezing every point into its middle."""
    means = np.array([iv.mean for iv in intervals] + list(extra), dtype=float)
    lo, hi = float(means.min()), float(means.max())
    span = hi - lo if hi > lo else max(abs(hi), 1e-3) * 0.1
    ends = [iv.mean + sign * iv.half_width for iv in intervals for sign in (-1, 1) if math.isfinite(iv.half_width)]
    return np.r_[means, np.clip(ends, lo - span, hi + span)] if ends else means


def _factor_name(path: str) -> str:
    """An axis title short enough for parallel coordinates: ``segmentation weight`` for
    ``weighting.weights.segmentation``, ``method`` for ``weighting.method``."""
    if path.startswith("weighting.weights."):
        return f"{path.removeprefix('weighting.weights.')} weight"
    return path.rsplit(".", 1)[-1] if "." in path else path


def _axis(label: str, values: list[Any]) -> dict:
    """One parallel-coordinates axis: numbers as they are (log-spaced positives on a log axis),
    anything else as integer codes with the names as tick text."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    levels = list(dict.fromkeys(values if numeric else [value_text(v) for v in values]))
    if numeric:
        arr = np.asarray(values, dtype=float)
        positive = bool((arr > 0).all())
        if positive and arr.max() / arr.min() >= 10:  # a log range: even spacing for its levels
            ticks = sorted(set(arr.tolist()))
            return {"label": f"{label} (log)", "values": np.log10(arr), "tickvals": np.log10(ticks).tolist(),
                    "ticktext": [f"{t:.3g}" for t in ticks]}
        return {"label": label, "values": arr}
    codes = [levels.index(value_text(v)) for v in values]
    out: dict[str, Any] = {"label": label, "values": codes, "tickvals": list(range(len(levels))), "ticktext": levels}
    if len(levels) == 1:
        out["range"] = [-1, 1]
    return out


def parcoords_rows(summary: Any) -> list[dict[str, Any]]:
    """One row per finished trial run: its level's factor values, seed, each task's primary test
    metric and its Δm (absent where it has none)."""
    rows = []
    for lv in summary.levels:
        for seed, values in lv.by_seed.items():
            row: dict[str, Any] = {"level": lv.label, "seed": seed, **{f"factor:{k}": v for k, v in lv.level.items()}}
            row.update({f"metric:{t}": float(v) for t, v in values.items()})
            if seed in lv.delta_m_by_seed and math.isfinite(lv.delta_m_by_seed[seed]):
                row["Δm"] = float(lv.delta_m_by_seed[seed])
            rows.append(row)
    return rows


def parcoords_figure(summary: Any, task_titles: Mapping[str, str] | None = None) -> tuple[go.Figure | None, list[str]]:
    """Parallel coordinates of the factors against every task's primary test metric and Δm, one
    line per finished run, coloured by Δm (else the first task's metric). Returns the figure
    (None without a finished run) and the axes left out because some runs have no value for them."""
    titles = task_titles or {}
    rows = parcoords_rows(summary)
    if not rows:
        return None, []
    factors = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith("factor:")]
    metrics = [f"metric:{t}" for t in summary.tasks] + ["Δm"]
    dims, left_out = [], []
    for key in factors + metrics:
        if not any(key in r for r in rows):
            continue
        if not all(key in r for r in rows):
            left_out.append(key.split(":", 1)[-1])
            continue
        values = [r[key] for r in rows]
        if key.startswith("factor:"):
            dims.append(_axis(_factor_name(key.removeprefix("factor:")), values))
        else:
            task = key.removeprefix("metric:")
            arrow = "" if key == "Δm" else ("↑" if summary.higher_is_better.get(task, True) else "↓")
            label = "Δm (%) ↑" if key == "Δm" else f"{titles.get(task, task)} {summary.primary.get(task, '')} {arrow}"
            dims.append({"label": label, "values": np.asarray(values, dtype=float)})
    color_key = "Δm" if all("Δm" in r for r in rows) else next((m for m in metrics if all(m in r for r in rows)), None)
    line: dict[str, Any] = {"color": "#3b6ea8"}
    if color_key is not None:
        task = color_key.removeprefix("metric:")
        line = {"color": [r[color_key] for r in rows], "colorscale": "Viridis", "showscale": True,
                "reversescale": color_key != "Δm" and not summary.higher_is_better.get(task, True),
                "colorbar": {"title": {"text": "Δm (%)" if color_key == "Δm" else task, "side": "right"},
                             "thickness": 12}}
    trace = {"type": "parcoords", "dimensions": dims, "line": line,
             "labelfont": {"size": 12}, "tickfont": {"size": 10}, "labelangle": 0}
    layout = _base_layout("", 420, "study-parcoords")
    layout.update(margin={"l": 90, "r": 70, "t": 60, "b": 30}, hovermode=False, title=None)
    return figure([trace], layout), left_out


def effect_figure(diffs: Mapping[int, float], interval: Any, text: str, holds: bool, sign: int) -> go.Figure:
    """A lesson's claim as it stands: each seed's paired difference as a dot, their mean with its 95%
    CI as a bar, and zero as a line (the claim holds when the bar clears zero on its side)."""
    color = "#2ca02c" if holds else "#1f77b4"
    seeds = sorted(diffs)
    traces: list[dict] = [{"type": "scatter", "x": [diffs[s] for s in seeds], "y": ["each seed"] * len(seeds),
                           "mode": "markers", "customdata": seeds, "marker": {"size": 10, "color": "#888", "opacity": 0.8},
                           "name": "each seed", "hovertemplate": "seed %{customdata}: %{x:+.4f}<extra></extra>"}]
    if interval is not None and interval.n >= 1 and math.isfinite(interval.mean):
        half = interval.half_width if math.isfinite(interval.half_width) else 0.0
        traces.append({"type": "scatter", "x": [interval.mean], "y": ["mean, 95% CI"], "mode": "markers",
                       "marker": {"size": 13, "color": color, "symbol": "diamond"}, "name": "mean ± 95% CI",
                       "error_x": {"type": "data", "array": [half], "visible": interval.n > 1, "thickness": 3, "width": 8,
                                   "color": color},
                       "hovertemplate": f"mean %{{x:+.4f}}<br>95% CI {interval.low:+.4f} to {interval.high:+.4f}"
                                        f"<br>{interval.n} seeds<extra></extra>"})
    xs = [diffs[s] for s in seeds] + [0.0]
    if interval is not None and interval.n > 1 and math.isfinite(interval.low):
        xs += [interval.low, interval.high]
    span = (max(xs) - min(xs)) or 1.0
    layout = _base_layout("The effect: each seed's difference, and their mean with its 95% CI", 260, "lesson-effect")
    layout.update(margin={"l": 110, "r": 20, "t": 40, "b": 45}, showlegend=False, hovermode="closest",
                  xaxis={"title": {"text": f"{text} ({'> 0' if sign > 0 else '< 0'} is the claim)",
                                   "font": {"size": 11}}, "zeroline": False,
                         "range": [min(xs) - 0.15 * span, max(xs) + 0.15 * span]},
                  yaxis={"categoryorder": "array", "categoryarray": ["mean, 95% CI", "each seed"]},
                  shapes=[{"type": "line", "x0": 0, "x1": 0, "yref": "paper", "y0": 0, "y1": 1,
                           "line": {"color": "#d62728", "width": 1.5, "dash": "dash"}}],
                  annotations=[{"x": 0, "y": 1, "yref": "paper", "text": "no effect", "showarrow": False,
                                "yanchor": "bottom", "font": {"size": 10, "color": "#d62728"}}])
    if not seeds:  # no made-up axes: a note where the seeds will be
        layout["xaxis"].update(visible=False)
        layout["yaxis"].update(visible=False)
        layout["shapes"] = []
        layout["annotations"] = [{"text": "each seed's difference appears here once both its runs have finished",
                                  "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
                                  "font": {"size": 11, "color": "#888"}}]
    return figure(traces, layout)
