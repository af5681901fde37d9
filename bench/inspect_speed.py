"""Seconds the error browser needs to open a split: a small demo run on the default scenes (4
tasks: classification, detection, segmentation, depth; 64 px; 20 steps, since speed is measured,
not quality) with a val split of ``--samples`` samples, then

(a) the first build of the per-sample outputs beside its checkpoint (the model over the split,
    decoding, ground truth, the error table at the default threshold, the file written);
(b) opening them again from that file in a fresh process-like state (the datasets' lru cache
    cleared): ``split_outputs`` + ``error_table`` + ``filter_rows`` with two conditions +
    ``sort_rows``, 5 times, the median.

(c) the Inspect page itself opening on that run (Streamlit's AppTest, its caches cleared, as a
    new visitor after a server restart: the model loaded, the file read, the error table, one
    page of 18 thumbnails drawn), 3 times, the median.

The last line is (c): the issue's bound is 2 seconds for a 512-sample split.

    python bench/inspect_speed.py [--samples 512] [--runs-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig  # noqa: E402
from mtl_core.inference import samples as samples_module  # noqa: E402
from mtl_core.inference.predictor import Predictor  # noqa: E402
from mtl_core.inspection.outputs import cache_path, split_outputs  # noqa: E402
from mtl_core.inspection.table import Condition, error_table, filter_rows, sort_rows  # noqa: E402
from mtl_core.runs.manager import RunManager  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402

TASKS = ("classification", "detection", "segmentation", "depth")
NAME = "bench-inspect"
REPEATS = 5


def bench_config(samples: int, steps: int) -> ExperimentConfig:
    return ExperimentConfig(name=NAME, tasks=TASKS,
                            data=DataConfig(image_size=64, train_size=max(steps * 16, 64), val_size=samples, test_size=64),
                            optim=OptimConfig(batch_size=16, steps=steps, warmup_steps=0),
                            eval_every=10_000, checkpoint_every=0, device="cpu", seed=0)


def demo_checkpoint(runs_dir: str, cfg: ExperimentConfig) -> tuple[str, bool]:
    """The final checkpoint of a finished run of ``cfg`` in ``runs_dir`` (reused when there is
    one), and whether it was trained now."""
    store = RunStore(runs_dir)
    for run in store.list_runs(limit=200):
        if run["name"] == NAME and run["status"] == "finished" and run["config"] == cfg.to_dict():
            ck = store.latest_checkpoint(run["id"], "final") or store.latest_checkpoint(run["id"])
            if ck is not None:
                return ck["path"], False
    manager = RunManager(runs_dir)
    try:
        run_id = manager.start(cfg)
        status = manager.wait(run_id, 1800)
        assert status == "finished", manager.store.get_run(run_id)["error"]
        ck = manager.store.latest_checkpoint(run_id, "final") or manager.store.latest_checkpoint(run_id)
        return ck["path"], True
    finally:
        manager.shutdown()


def open_split(checkpoint: str) -> tuple[float, float, int]:
    """What the error browser does on opening: ``(seconds for split_outputs, seconds for the
    table, rows shown)``."""
    samples_module._dataset.cache_clear()
    t0 = time.perf_counter()
    outputs = split_outputs(checkpoint, "val")
    t1 = time.perf_counter()
    table = error_table(outputs)
    rows = filter_rows(table, [Condition("detection/misses", ">=", 1), Condition("segmentation/iou", "<=", 0.5)])
    rows = sort_rows(table, rows, "segmentation/iou", worse="low")
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(rows)


def open_page(runs_dir: str) -> tuple[float, int]:
    """Seconds for one run of ``pages/inspect.py`` with every cache cleared, and the thumbnails shown."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    os.environ["MTL_RUNS_DIR"] = runs_dir
    st.cache_resource.clear()
    st.cache_data.clear()
    samples_module._dataset.cache_clear()
    at = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=600)
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    return seconds, len(at.image)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=512, help="val samples (default 512)")
    ap.add_argument("--steps", type=int, default=20, help="training steps of the demo run (default 20)")
    ap.add_argument("--runs-dir", help="runs directory to train in, or reuse a run from (default: a temporary one)")
    args = ap.parse_args()
    cfg = bench_config(args.samples, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        checkpoint, trained = demo_checkpoint(args.runs_dir or tmp, cfg)
        print(f"demo run: {', '.join(TASKS)}, 64 px, {args.steps} steps, {args.samples} val samples "
              f"({'trained' if trained else 'reused'} in {time.perf_counter() - t0:.1f} s)")

        cache_path(checkpoint, "val").unlink(missing_ok=True)
        samples_module._dataset.cache_clear()
        t0 = time.perf_counter()
        outputs = split_outputs(checkpoint, "val")
        first = time.perf_counter() - t0
        size = cache_path(checkpoint, "val").stat().st_size
        print(f"first build of the per-sample outputs ({len(outputs)} samples): {first:.2f} s, "
              f"file {size / 2**20:.1f} MiB")

        t0 = time.perf_counter()
        Predictor(checkpoint)
        print(f"loading the model alone (split_outputs does it on every open, from the file too): "
              f"{time.perf_counter() - t0:.2f} s")

        loads, tables, shown = [], [], 0
        for _ in range(REPEATS):
            load, table, shown = open_split(checkpoint)
            loads.append(load)
            tables.append(table)
        totals = [a + b for a, b in zip(loads, tables, strict=True)]
        print(f"open from the file, median of {REPEATS}: split_outputs {statistics.median(loads):.3f} s, "
              f"error table + filter + sort {statistics.median(tables) * 1e3:.1f} ms ({shown} rows pass both conditions)")
        print(f"open from the file ({len(outputs)} samples), core only: {statistics.median(totals):.2f} s")

        open_page(args.runs_dir or tmp)  # the first AppTest run in a process imports Streamlit's runtime
        pages = [open_page(args.runs_dir or tmp) for _ in range(3)]
        print(f"Inspect page, caches cleared, median of 3 ({pages[0][1]} thumbnails): "
              + ", ".join(f"{p:.2f}" for p, _ in pages) + " s")
        print(f"inspect open ({len(outputs)} samples): {statistics.median(p for p, _ in pages):.2f} s")


if __name__ == "__main__":
    main()
