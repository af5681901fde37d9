"""The demo as the Home page's "Start a demo run" button starts it (the default config,
``ExperimentConfig(name="demo")``, through the RunManager's background thread), timed from the
click: when the first training point and the first validation point of every task reach the run
store (what the Live page draws from), and when the last evaluation is written.

Targets (issue 17): every curve's first point within 5 s, the last evaluation within 60 s, with
validation accuracy >= 0.90, mAP@0.5 >= 0.60 and mIoU >= 0.70.

    python bench/demo_start.py [--runs 1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.config import ExperimentConfig  # noqa: E402
from mtl_core.runs.manager import RunManager, preload  # noqa: E402

POLL_S = 0.25  # the Live page polls every second; this must not slow the run it times


def one_demo(runs_dir: str) -> dict[str, float]:
    preload()  # as the dashboard does in the background while the Home page is read
    manager = RunManager(runs_dir)
    cfg = ExperimentConfig(name="demo")
    keys = [f"loss/{t}" for t in cfg.tasks]
    try:
        t0 = time.perf_counter()  # the click
        run_id = manager.start(cfg, name="demo")
        first: dict[str, float] = {}
        while manager.store.get_run(run_id)["status"] in ("queued", "running"):
            for split in ("train", "val"):
                if split not in first:
                    rows = manager.store.metrics(run_id, split)
                    if rows and all(any(k == key for _, _, k, _, _ in rows) for key in keys):
                        first[split] = time.perf_counter() - t0
            time.sleep(POLL_S)
        done = time.perf_counter() - t0
        run = manager.store.get_run(run_id)
        val = {k: v for _, _, k, v, _ in manager.store.metrics(run_id, "val")}
        return {"train": first.get("train", float("nan")), "val": first.get("val", float("nan")), "done": done,
                "steps": run["step"], "acc": val.get("classification/accuracy", float("nan")),
                "map50": val.get("detection/map50", float("nan")), "miou": val.get("segmentation/miou", float("nan"))}
    finally:
        manager.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1, help="demos to time, one after another")
    a = ap.parse_args()
    for i in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            r = one_demo(d)
        print(f"demo {i + 1}: first training points {r['train']:.1f} s, first validation points {r['val']:.1f} s, "
              f"last evaluation {r['done']:.1f} s ({r['steps']} steps)")
        print(f"accuracy {r['acc']:.3f}  mAP@0.5 {r['map50']:.3f}  mIoU {r['miou']:.3f}  first points "
              f"{max(r['train'], r['val']):.1f} s  seconds {r['done']:.0f}")


if __name__ == "__main__":
    main()
