"""Train the default demo config (classification, detection, segmentation at 64x64) from scratch
on this machine's CPU for at most 180 s of training, then print every task's validation metrics,
its primary one on the last line (accuracy, mAP@0.5, mIoU; the mean angle of normals, depth's
abs-rel ...), and the seconds taken.

Targets (issue 2): accuracy >= 0.90, mAP@0.5 >= 0.60, mIoU >= 0.70; (issue 29) with
``--set 'tasks=["segmentation","normals"]'``, a mean angular error of normals below 15 degrees.

    python bench/demo_quality.py [--seconds 60] [--set optim.lr=0.01 --set model.width=12 ...]

``--set`` lays a config field over the demo's (a JSON value, or a string; ``tasks=a,b`` a comma list), for trying a change
before it becomes the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.config import ExperimentConfig, merge, parse_set  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.tasks import task_meta  # noqa: E402
from mtl_core.training.loop import Trainer  # noqa: E402

# how the last line names a task's headline metric: (metric, words, format); other tasks: their primary
HEADLINE = {"classification": ("accuracy", "accuracy", "{:.3f}"), "detection": ("map50", "mAP@0.5", "{:.3f}"),
            "segmentation": ("miou", "mIoU", "{:.3f}"), "normals": ("mean", "normals mean angle", "{:.1f}°"),
            "depth": ("abs_rel", "depth abs-rel", "{:.3f}")}


def demo_config(seconds: float, overrides: dict | None = None) -> ExperimentConfig:
    """The demo config, time-boxed: the cosine schedule follows the time budget."""
    cfg = ExperimentConfig(name="demo-quality", device="cpu")
    cfg = dataclasses.replace(cfg, time_limit=seconds, optim=dataclasses.replace(cfg.optim, steps=100_000),
                              eval_every=100_000, checkpoint_every=0)
    return ExperimentConfig.from_dict(merge(cfg.to_dict(), overrides or {})) if overrides else cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=180.0, help="training time budget (default 180)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a config field to change")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        cfg = demo_config(a.seconds - 8, parse_set(a.set))  # leave room for the final evaluation inside the budget
        rid = store.create_run(cfg.to_dict(), cfg.name, "bench", cfg.optim.steps)
        t0 = time.time()
        status = Trainer(cfg, store, rid).run()
        seconds = time.time() - t0
        run = store.get_run(rid)
        if status != "finished":
            raise SystemExit(f"run {status}: {run['error']}")
        val = {k: v for step, split, k, v, _ in store.metrics(rid, "val")}
        print(f"steps: {run['step']}  images/s: {run['info'].get('images_per_s', 0):.0f}")
        for k in sorted(val):
            print(f"  {k:32s} {val[k]:.4f}")
        print("  ".join(headline(cfg, val)) + f"  seconds {seconds:.0f}")


def headline(cfg: ExperimentConfig, val: dict[str, float]) -> list[str]:
    """Each task's headline metric in words, in the config's task order ("mIoU 0.745")."""
    meta = task_meta(cfg.tasks, cfg.task_specs)
    out = []
    for task in cfg.tasks:
        kind, primary = meta[task]["kind"], meta[task]["primary"]
        metric, words, fmt = HEADLINE.get(kind, (primary, primary, "{:.3f}"))
        words = words if task == kind else f"{task} {words}"  # a task of its own name: "left accuracy"
        value = val.get(f"{task}/{metric}")
        out.append(f"{words} {fmt.format(value) if value is not None else 'n/a'}")
    return out


if __name__ == "__main__":
    main()
