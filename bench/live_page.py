"""Time one rerun of the live page's chart fragment (data + figures) for runs of 20,000 and 200,000
metric rows.

A synthetic run is written to a temporary run store with ``store.log_metrics``; we time
``ui.live_view.live_figures`` (what the fragment calls every few seconds) cold (first read of all
rows) and warm (the next refresh: a few new rows, the rest cached), plus the figures' JSON
encoding that ``st.plotly_chart`` performs. Target: the warm rerun under 150 ms at both sizes
(the store's poll reads only the new rows, so its cost does not grow with the run). The last
line is the 200,000-row warm figure.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.store.store import RunStore  # noqa: E402
from ui.charts import TaskMeta  # noqa: E402
from ui.live_view import live_figures  # noqa: E402
from ui.metrics import MetricCache  # noqa: E402

TASKS = ("classification", "detection", "segmentation")
META = {"classification": TaskMeta("classification", "accuracy", True), "detection": TaskMeta("detection", "map", True),
        "segmentation": TaskMeta("segmentation", "miou", True)}
SIZES = (20_000, 200_000)


def synthetic_run(store: RunStore, points: int) -> tuple[str, int]:
    """A run with exactly ``points`` metric rows: per step, loss and weight per task, total loss and
    lr (8 rows); a validation pass (2 metrics + loss per task) every 100 steps."""
    cfg = {"tasks": list(TASKS), "weighting": {"method": "static"}}
    run_id = store.create_run(cfg, "bench", "cli", 5000, status="running")
    rng = np.random.default_rng(0)
    rows, step, now = [], 0, time.time()
    while len(rows) < points:
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
    rows = rows[:points]
    store.log_metrics(run_id, rows)
    for s in (500, 1500):
        store.add_event(run_id, s, "weights", {"old": {t: 1.0 for t in TASKS}, "new": {**{t: 1.0 for t in TASKS},
                                                                                      "segmentation": 2.0}})
    store.update_progress(run_id, step, {"images_per_s": 500.0, "eta_s": 30.0})
    return run_id, step


def measure(points: int) -> dict[str, float]:
    """Median cold, warm and JSON-encoding times (ms) of the live charts for a run of ``points`` rows."""
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        run_id, step = synthetic_run(store, points)
        assert store.metric_count(run_id) == points
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
        drawn = sum(len(tr.x) for f in view.figures.values() for tr in f.data)
        print(f"{points:,} rows: figures: {len(view.figures)}, points drawn: {drawn} "
              f"(from {store.metric_count(run_id)} rows)")
        return {k: statistics.median(v) * 1e3 for k, v in (("cold", cold), ("warm", warm), ("encode", encode))}


def main() -> None:
    results = {points: measure(points) for points in SIZES}
    for points, r in results.items():
        print(f"{points:,} rows: warm rerun {r['warm']:.1f} ms data + figures (+{r['encode']:.1f} ms JSON in "
              f"st.plotly_chart); first view of the run (every row read) {r['cold']:.1f} ms")
    big = results[SIZES[-1]]
    print(f"live fragment rerun, {SIZES[-1]:,} rows: {big['warm']:.1f} ms data + figures (+{big['encode']:.1f} ms "
          f"JSON; first view {big['cold']:.1f} ms; {SIZES[0]:,} rows: {results[SIZES[0]]['warm']:.1f} ms); "
          "target < 150 ms")


if __name__ == "__main__":
    main()
