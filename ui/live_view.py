"""The live page's view of one run: read the rows new since the last refresh, then rebuild only
the figures whose data changed (``live_figures``); the gradient-conflict figures are memoised
apart, since their statistics arrive every ``gradstats_every`` steps and losses every step.

The figures themselves come from :mod:`ui.charts`. The memo lives in the run's
:class:`ui.metrics.MetricCache` (``cache.memo``), so it goes when the cache starts over. No
Streamlit, no torch: timed headless by ``bench/live_page.py``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from ui.charts import (
    GRAD_COS,
    GRAD_NORM,
    TaskMeta,
    colors,
    cosine_heatmap,
    gradcos_figure,
    gradnorm_figure,
    latest_gradstats,
    task_figure,
    total_loss_figure,
    weights_figure,
)
from ui.metrics import MetricCache

KEEP_LOOKS = 8  # (smoothing, log scale) combinations whose figures a run's cache keeps


@dataclass
class LiveView:
    """Everything the live page draws for one run at one moment."""

    run: dict[str, Any]
    tasks: list[str]
    figures: dict[str, go.Figure] = field(default_factory=dict)  # stable key -> figure
    events: list[dict[str, Any]] = field(default_factory=list)
    new_rows: int = 0
    grad_step: int | None = None  # the last step that recorded gradient statistics


def conflict_figures(cache: MetricCache, tasks: Sequence[str], cosine_matrix: Callable[..., list[list[float]]],
                     meta: Mapping[str, TaskMeta] | None = None, smoothing: float = 0.0,
                     task_colors: Mapping[str, str] | None = None, uirevision: str = "") -> dict[str, go.Figure]:
    """The three gradient-conflict figures (``gradcos_matrix``, ``gradcos``, ``gradnorm``), or ``{}``
    for a single-task run or before the first statistics. ``cosine_matrix`` is
    ``mtl_core.training.gradstats.cosine_matrix`` (passed in, so this module stays free of torch)."""
    if len(tasks) < 2:
        return {}
    step, stats = latest_gradstats(cache)
    if step is None:
        return {}
    meta = meta or {}
    matrix = cosine_matrix(stats, list(tasks))
    labels = [meta.get(t, TaskMeta(t)).label for t in tasks]
    return {"gradcos_matrix": cosine_heatmap(matrix, labels, step, uirevision),
            "gradcos": gradcos_figure(cache, tasks, meta, smoothing, uirevision),
            "gradnorm": gradnorm_figure(cache, tasks, task_colors, meta, uirevision)}


def cached_conflict(cache: MetricCache) -> tuple[dict[str, go.Figure], int | None]:
    """The gradient-conflict figures and their step as :func:`live_figures` last built them
    (``({}, None)`` before it has), for a part of the page that refreshes on its own clock."""
    memo = cache.memo.get("conflict")
    return (memo[1], memo[2]) if memo else ({}, None)


def live_figures(store: Any, run_id: str, smoothing: float = 0.6, log_y: bool = False,
                 cache: MetricCache | None = None, meta: Mapping[str, TaskMeta] | None = None,
                 cosine_matrix: Callable[..., list[list[float]]] | None = None) -> LiveView | None:
    """One refresh of the live page: read the rows new since ``cache`` last looked, then build
    the task panels, the total-loss and the weights figures, and (given ``cosine_matrix``) the
    gradient-conflict figures of :func:`conflict_figures`. ``None`` when the run is gone.
    Nothing new since the last call: the same figures, not rebuilt."""
    run = store.get_run(run_id)
    if run is None:
        return None
    cache = cache if cache is not None and cache.run_id == run_id else MetricCache(run_id)
    events = store.events(run_id, kind="weights")
    added = cache.update(store)  # starts over by itself when the run's metrics history changes
    tasks = list(run["config"].get("tasks", []))
    memo_key = (round(float(smoothing), 4), bool(log_y), len(events), cache.count, cache.last_step,
                cosine_matrix is not None)
    slot = ("live", memo_key[0], memo_key[1])  # one per look, so viewers with other smoothing share the series
    previous = cache.memo.get(slot)
    if previous is not None and previous[0] == memo_key:  # nothing new: the same figures
        return LiveView(run=run, tasks=tasks, figures=previous[1], events=events, new_rows=added,
                        grad_step=previous[2])
    meta = meta or {}
    task_colors = colors(tasks)
    figs: dict[str, go.Figure] = {}
    for t in tasks:
        figs[f"task:{t}"] = task_figure(cache, meta.get(t, TaskMeta(t)), smoothing, log_y, events,
                                        task_colors[t], uirevision=run_id)
    figs["total"] = total_loss_figure(cache, smoothing, log_y, events, uirevision=run_id)
    figs["weights"] = weights_figure(cache, tasks, events, task_colors, uirevision=run_id)
    grad_step = None
    if cosine_matrix is not None:
        # gradient statistics arrive every gradstats_every steps, losses every step: rebuild these
        # three figures only when a statistic arrived (or the smoothing changed)
        grad_key = (round(float(smoothing), 4), tuple(sorted(
            (k, len(v[0])) for (split, k), v in cache.series.items() if split == "train" and k.startswith((GRAD_COS, GRAD_NORM)))))
        previous_grad = cache.memo.get("conflict")
        if previous_grad is None or previous_grad[0] != grad_key:
            conflict = conflict_figures(cache, tasks, cosine_matrix, meta, smoothing, task_colors, uirevision=run_id)
            previous_grad = (grad_key, conflict, latest_gradstats(cache)[0] if conflict else None)
            cache.memo["conflict"] = previous_grad
        figs.update(previous_grad[1])
        grad_step = previous_grad[2]
    cache.memo.pop(slot, None)
    cache.memo[slot] = (memo_key, figs, grad_step)  # newest last
    looks = [k for k in cache.memo if isinstance(k, tuple) and k[0] == "live"]
    for old in looks[: max(0, len(looks) - KEEP_LOOKS)]:
        cache.memo.pop(old)
    return LiveView(run=run, tasks=tasks, figures=figs, events=events, new_rows=added, grad_step=grad_step)


def task_rows(cache: MetricCache, tasks: Sequence[str], meta: Mapping[str, TaskMeta]) -> list[dict[str, Any]]:
    """One row per task for a run of many tasks: its kind, its latest training loss, and its
    primary metric at the latest evaluation (empty until there is one)."""
    def last(split: str, key: str) -> float | None:
        steps, values = cache.series.get((split, key), ([], []))
        return float(values[-1]) if values else None

    rows = []
    for t in tasks:
        m = meta.get(t, TaskMeta(t))
        loss, value = last("train", f"loss/{t}"), last("val", f"{t}/{m.primary}") if m.primary else None
        rows.append({"task": m.label, "kind": m.kind, "training loss": None if loss is None else round(loss, 4),
                     "validation": f"{m.primary} {value:.3f}" if value is not None else "",
                     "better": "higher" if m.higher_is_better else "lower"})
    return rows
