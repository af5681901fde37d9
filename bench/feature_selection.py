"""Structured channel pruning of the default demo: train it (the default config's fixed steps),
remove half of the backbone's channels, fine-tune, quantize to int8, and print the table of
:func:`mtl_core.deploy.structured.compare_models` (parameters, multiply-adds, size, CPU latency at
batch 1 and 32, every task's primary metric); the LAST line gives the CPU speed-up at batch 32 of
the fine-tuned float model over the original and the worst primary-metric drop among the tasks.

    python bench/feature_selection.py [--amount 0.5] [--finetune-steps 600] [--set optim.steps=900 ...]

A smoke run on tiny settings (seconds):
    python bench/feature_selection.py --finetune-steps 5 --set optim.steps=20 --set data.image_size=32 \\
        --set data.train_size=64 --set data.val_size=32 --eval-limit 32
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.demo_quality import parse_set  # noqa: E402
from mtl_core.config import ExperimentConfig, merge  # noqa: E402
from mtl_core.deploy.structured import format_table, prune_run  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.training.loop import Trainer  # noqa: E402


def demo_config(overrides: dict | None = None) -> ExperimentConfig:
    """The default demo config at its fixed number of steps, evaluated only at the end."""
    cfg = ExperimentConfig(name="feature-selection", device="cpu")
    cfg = dataclasses.replace(cfg, eval_every=100_000, checkpoint_every=0)
    return ExperimentConfig.from_dict(merge(cfg.to_dict(), overrides or {})) if overrides else cfg


def worst_drop(report: dict, model: str) -> tuple[str, float]:
    """The task primary metric that ``model`` loses most on against the original (positive = worse)."""
    rows = {r["model"]: r for r in report["rows"]}
    drops = {}
    for task, key in report["primary"].items():
        sign = 1.0 if report["higher_is_better"][task] else -1.0
        drops[key] = sign * (rows["original"][key] - rows[model][key])
    key = max(drops, key=drops.get)
    return key, drops[key]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--amount", type=float, default=0.5, help="share of every backbone layer's channels removed")
    ap.add_argument("--finetune-steps", type=int, default=600)
    ap.add_argument("--finetune-lr", type=float, default=None, help="peak fine-tuning rate (default: the run's own)")
    ap.add_argument("--importance", choices=("magnitude", "taylor"), default="magnitude")
    ap.add_argument("--eval-limit", type=int, default=None, help="validation images scored (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a config field to change")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        cfg = demo_config(parse_set(a.set))
        rid = store.create_run(cfg.to_dict(), cfg.name, "bench", cfg.optim.steps)
        t0 = time.time()
        status = Trainer(cfg, store, rid).run()
        if status != "finished":
            raise SystemExit(f"run {status}: {store.get_run(rid)['error']}")
        trained = time.time() - t0
        t0 = time.time()
        report = prune_run(store, rid, a.amount, a.finetune_steps, importance=a.importance, eval_limit=a.eval_limit,
                           lr=a.finetune_lr, latency_runs=30)  # 30 timings: this VM's latency is noisy
        print(f"trained {cfg.optim.steps} steps in {trained:.0f} s; pruned {a.amount:.0%} of the channels "
              f"({a.importance}), fine-tuned {a.finetune_steps} steps, int8, measured in {time.time() - t0:.0f} s")
        print(format_table(report["rows"]))
        rows = {r["model"]: r for r in report["rows"]}
        best = "fine-tuned" if "fine-tuned" in rows else "channel-pruned"
        speedup = rows["original"]["latency b32 (ms)"] / rows[best]["latency b32 (ms)"]
        key, drop = worst_drop(report, best)
        print(f"CPU speed-up at batch 32 ({best} vs original): {speedup:.2f}x; worst primary-metric drop: "
              f"{key} {drop:+.4f}")


if __name__ == "__main__":
    main()
