"""The Studies page's banded curves, redrawn live while a study trains: each task's primary
validation metric and the total training loss, per level as its mean over seeds with a band,
the baselines grey; a level's seeds that have trained further than the others drawn beyond the
steps they all share. Curves are read from the store again only when a run of the level moved.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from mtl_core.studies.store import StudyStore
from mtl_core.studies.summary import Level, level_curves
from ui.live_plot import live_chart
from ui.shared import fresh_memo
from ui.state import manager
from ui.study_charts import band_figure

CURVE_MEMO = 256  # level curves the process keeps, so a level whose runs did not move is not read again


def _curve(store: Any, level: Level, split: str, key: str, runs: dict[str, dict]) -> tuple:
    """``summary.level_curves``, read again only when a run of the level moved since the last look."""
    mark = tuple((rid, runs[rid]["status"], runs[rid]["step"], runs[rid]["updated"]) if rid in runs else (rid,)
                 for rid in level.run_ids.values())
    k = (split, key, level.label, tuple(level.run_ids.values()))
    # shared by every session watching the study (ui/shared.py), not one memo per browser
    return fresh_memo("study_curves", k, mark, lambda: level_curves(store, level, split, key),
                      settled=tuple(m[:2] for m in mark), keep=CURVE_MEMO)  # a run that ended: its last rows


def _ahead(store: Any, level: Level, split: str, key: str, runs: dict[str, dict], shared: tuple) -> tuple | None:
    """The level's seeds that have trained furthest, where the others lag behind (its next seed
    has just started): their curve beyond the steps all its seeds share, or None."""
    steps = {s: runs[rid]["step"] for s, rid in level.run_ids.items() if rid in runs and runs[rid]["step"]}
    if len(steps) < 2 or len(set(steps.values())) == 1:
        return None
    top = max(steps.values())
    front = Level(level.label, level.level, level.seeds,
                  run_ids={s: level.run_ids[s] for s, step in steps.items() if step == top})
    curve = _curve(store, front, split, key, runs)
    if not len(curve[0]) or (len(shared[0]) and curve[0][-1] <= shared[0][-1]):
        return None
    cut = int(np.searchsorted(curve[0], shared[0][-1])) if len(shared[0]) else 0  # from the last shared step on
    return tuple(a[cut:] for a in curve[:3]) + (curve[3],)


def curves_panel(study_id: str, levels: list[Level], baselines: list[Level], tasks: list[str], meta: dict,
                 labels: dict[str, str], colors: dict[str, str], legend: str, smoothing: float) -> None:
    """Every few seconds: each task's primary validation metric and the total training loss, per
    level as its mean over seeds with a ± 1 std band (the baselines grey, dashed)."""
    store = manager().store
    runs = {row["run_id"]: row["run"] for row in StudyStore(store).plan(study_id) if row["run"] is not None}
    keyed = [(t, f"{t}/{meta[t]['primary']}") for t in tasks if meta[t]["primary"]]
    by_label = {labels[k]: v for k, v in colors.items()}

    def series(split: str, key: str) -> tuple[dict, dict]:
        curves, ahead = {}, {}
        for lv in levels:
            curves[labels[lv.label]] = shared = _curve(store, lv, split, key, runs)
            if (more := _ahead(store, lv, split, key, runs, shared)) is not None:
                ahead[labels[lv.label]] = more
        return curves, ahead

    for i in range(0, len(keyed) + 1, 2):
        cols = st.columns(2)
        for col, item in zip(cols, (keyed + [("", "loss/total")])[i:i + 2], strict=False):
            task, key = item
            with col:
                if task:
                    arrow = "↑" if meta[task]["higher_is_better"] else "↓"
                    curves, ahead = series("val", key)
                    base = {lv.label: _curve(store, lv, "val", key, runs) for lv in baselines if lv.level.get("task") == task}
                    fig = band_figure(curves, f"{meta[task]['title']}: validation {meta[task]['primary']} {arrow}",
                                      meta[task]["primary"], by_label, base, legend, uirevision=study_id, ahead=ahead)
                    live_chart(fig, key=f"study_{study_id}_task_{task}")
                else:
                    curves, ahead = series("train", key)
                    fig = band_figure(curves, "Total (weighted) training loss", "loss", by_label, None, legend,
                                      uirevision=study_id, ahead=ahead, smoothing=smoothing)
                    live_chart(fig, key=f"study_{study_id}_total")
