"""Time one rerun of the live page's fragment (data + figures) for a run with 20,000 metric points.

A synthetic run is written to a temporary run store with ``store.log_metrics``; we time
``ui.charts.live_figures`` (what the fragment calls every second) cold (first read of all rows)
and warm (a second later: a few new rows, the rest cached), plus the figures' JSON encoding
that ``st.plotly_chart`` performs. Target: under 150 ms. The last line is the figure.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.runs.store import RunStore  # noqa: E402
from ui.charts import TaskMeta, live_figures  # noqa: E402
from ui.metrics import MetricCache  # noqa: E402

TASKS = ("classification", "detection", "segmentation")
META = {"classification": TaskMeta("classification", "accuracy", True), "detection": TaskMeta("detection", "map", True),
        "segmentation": TaskMeta("segmentation", "miou", True)}
POINTS = 20_000


def synthetic_run(store: RunStore) -> tuple[str, int]:
    """A run with exactly POINTS metric rows: per step, loss and weight per task, total loss and lr
    (8 rows); a validation pass (2 metrics + loss per task) every 100 steps."""
    cfg = {"tasks": list(TASKS), "weighting": {"method": "static"}}
    run_id = store.create_run(cfg, "bench", "cli", 5000, status="running")
    rng = np.random.default_rng(0)
    rows, step, now = [], 0, time.time()
    while len(rows) < POINTS:
        step += 1
        for i, t in enumerate(TASKS):
            rows.append((step, "train", f"loss/{t}", float(2.0 / (1 + step / 300) + 0.1 * rng.random() + i), now))
            rows.append((step, "train", f"weight/{t}", 1.0, now))
        rows.append((step, "train", "loss/total", float(3 / (1 + step / 300)), now))
        rows.append((step, "train", "lr", 1e-3, now))
        if step % 100 == 0:
            for t in TASKS:
                rows += [(step, "val", f"{t}/{META[t].primary}", float(1 - 1 / (1 + step / 500)), now),
                         (step, "val", f"{t}/other", 0.5, now), (step, "val", f"loss/{t}", 1.0, now)]
    rows = rows[:POINTS]
    store.log_metrics(run_id, rows)
    for s in (500, 1500):
        store.add_event(run_id, s, "weights", {"old": {t: 1.0 for t in TASKS}, "new": {**{t: 1.0 for t in TASKS},
                                                                                      "segmentation": 2.0}})
    store.update_progress(run_id, step, {"images_per_s": 500.0, "eta_s": 30.0})
    return run_id, step


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        run_id, step = synthetic_run(store)
        assert store.metric_count(run_id) == POINTS
        cold, warm, encode = [], [], []
        for _ in range(5):
            cache = MetricCache(run_id)
            t0 = time.perf_counter()
            view = live_figures(store, run_id, 0.6, False, cache, META)
            cold.append(time.perf_counter() - t0)
        for _ in range(10):  # steady state: one new step per refresh
            step += 1
            store.log_metrics(run_id, [(step, "train", f"loss/{t}", 1.0, time.time()) for t in TASKS])
            t0 = time.perf_counter()
            view = live_figures(store, run_id, 0.6, True, cache, META)
            warm.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for fig in view.figures.values():
                fig.to_json()
            encode.append(time.perf_counter() - t0)
        points = sum(len(tr.x) for f in view.figures.values() for tr in f.data)
        print(f"figures: {len(view.figures)}, points drawn: {points} (from {store.metric_count(run_id)} rows)")
        c, w, e = (statistics.median(x) * 1e3 for x in (cold, warm, encode))
        print(f"cold (first read of every row): {c:.1f} ms; figure JSON encoding (in st.plotly_chart): {e:.1f} ms")
        print(f"live fragment rerun, 20,000 points: {w:.1f} ms data + figures (+{e:.1f} ms JSON; first view of the run "
              f"{c:.1f} ms); target < 150 ms")


if __name__ == "__main__":
    main()
