"""The figures a lesson draws from its study as it trains: each chart of the lesson file
(``curves``, ``losses``, ``weights``, ``cosine``, ``tradeoff``, ``effect``) built from what the run
store holds now. No Streamlit here: the page places the figures, these functions only read.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from mtl_core.lessons.effect import Effect, Measured, arm_values
from mtl_core.studies.summary import Level, level_curves, pareto_levels
from ui.study_charts import band_figure, effect_figure, short_label, tradeoff_figure

Curve = tuple[np.ndarray, np.ndarray, np.ndarray, int]
TOGETHER = "learnt together"  # a lesson study's one level when it has no factors (the study's "base config")


def level_labels(summary: Any, names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each level's name in a lesson's charts: the lesson's own name for it (``level_names``, keyed
    by the level's values as the Studies page shows them, e.g. ``"1"`` or ``"nash_mtl"``), else its
    factor values, or "learnt together" for a study without factors (against the tasks alone)."""
    names = names or {}
    out = {}
    for lv in summary.levels:
        short = short_label(lv.level) if lv.level else TOGETHER
        out[lv.label] = names.get(short, short)
    return out


def _series(store: Any, levels: list[Level], labels: Mapping[str, str], split: str, key: str) -> dict[str, Curve]:
    return {labels.get(lv.label, lv.label): level_curves(store, lv, split, key) for lv in levels}


def chart_figures(chart: Mapping[str, Any], store: Any, summary: Any, baselines: list[Level], meta: Mapping[str, Any],
                  labels: Mapping[str, str], colors: Mapping[str, str], legend: str, measured: Measured | None,
                  uirevision: str) -> list[tuple[str, go.Figure]]:
    """One lesson chart as ``(key, figure)`` pairs (a per-task chart over several tasks gives one each)."""
    kind = chart["kind"]
    by_label = {labels.get(k, k): v for k, v in colors.items()}
    tasks = [t for t in chart.get("tasks", [chart["task"]] if "task" in chart else summary.tasks) if t in meta]
    out: list[tuple[str, go.Figure]] = []
    if kind == "curves":
        for t in tasks:
            key = f"{t}/{meta[t]['primary']}"
            base = {lv.label: level_curves(store, lv, "val", key) for lv in baselines if lv.level.get("task") == t}
            arrow = "↑" if meta[t]["higher_is_better"] else "↓"
            out.append((f"curves_{t}", band_figure(_series(store, summary.levels, labels, "val", key),
                                                   f"{meta[t]['title']}: validation {meta[t]['primary']} {arrow}",
                                                   meta[t]["primary"], by_label, base, legend, uirevision=uirevision)))
    elif kind == "losses":
        for t in tasks:
            out.append((f"losses_{t}", band_figure(_series(store, summary.levels, labels, "train", f"loss/{t}"),
                                                   f"{meta[t]['title']}: training loss (as scaled)", "loss", by_label,
                                                   None, legend, uirevision=uirevision, log_y=True, smoothing=0.6)))
    elif kind == "weights":
        for t in tasks:
            out.append((f"weights_{t}", band_figure(_series(store, summary.levels, labels, "train", f"weight/{t}"),
                                                    f"The weight each method gave {meta[t]['title'].lower()}", "weight",
                                                    by_label, None, legend, uirevision=uirevision, log_y=True)))
    elif kind == "cosine":
        a, b = (chart.get("pair") or summary.tasks[:2])[:2]
        series = _series(store, summary.levels, labels, "train", f"gradcos/{a}|{b}")
        if not any(len(c[0]) for c in series.values()):  # the store keys a pair in the runs' task order
            series = _series(store, summary.levels, labels, "train", f"gradcos/{b}|{a}")
        fig = band_figure(series, f"Gradient cosine, {meta.get(a, {}).get('title', a).lower()} and "
                          f"{meta.get(b, {}).get('title', b).lower()}", "cosine (below 0: they pull apart)", by_label,
                          None, legend, uirevision=uirevision, smoothing=0.6)
        fig.add_hline(y=0, line={"color": "#d62728", "width": 1, "dash": "dash"})
        out.append(("cosine", fig))
    elif kind == "tradeoff":
        tx, ty = chart.get("x", summary.tasks[0]), chart.get("y", summary.tasks[-1])
        on = pareto_levels(summary, [tx, ty])
        titles = {t: meta[t]["title"] for t in meta}
        out.append(("tradeoff", tradeoff_figure(summary, tx, ty, on, labels, colors, titles)))
    elif kind == "effect" and measured is not None:
        out.append(("effect", effect_figure(per_seed(summary, measured.effect), measured.interval, measured.effect.text,
                                            measured.holds, measured.effect.sign)))
    return out


def per_seed(summary: Any, effect: Effect) -> dict[int, float]:
    """Each seed's paired difference ``a - b`` (the seeds both arms have finished)."""
    a, b = arm_values(summary, effect.task, effect.a), arm_values(summary, effect.task, effect.b)
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
