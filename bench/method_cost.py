"""Time per training step of every weighting method as a ratio to equal weighting (EW), on the
same batch, for the 3-task demo model; gradient methods on the shared parameters and, where
they allow it, on the shared representation.

Targets (issue 4): loss-based <= 1.1; gradient-based on the representation <= 1.5; on the
parameters <= T + 1 (T tasks). The last line names the worst ratio of each kind.

    python bench/method_cost.py [--steps 6]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mtl_core.config import ExperimentConfig  # noqa: E402
from mtl_core.data.base import collate  # noqa: E402
from mtl_core.training.builders import build_all  # noqa: E402
from mtl_core.weighting import WEIGHTINGS, build_weighting  # noqa: E402


def step_time(method: str, rep: bool, built, images, targets, steps: int) -> float:
    torch.manual_seed(0)
    model, tasks = built["model"], built["tasks"]
    w = build_weighting(method, list(tasks), rep_grad=rep)
    opt = torch.optim.AdamW(list(model.parameters()) + list(w.parameters()), lr=1e-4)
    shared = model.shared_parameters()
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        outputs, r = model.forward_train(images, rep_grad=rep)
        losses = {t: task.loss(outputs[t], targets[t]) for t, task in tasks.items()}
        opt.zero_grad(set_to_none=True)
        w.combine(losses, shared, i, rep=r)
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return min(times)  # the least-disturbed step: a neighbour only ever adds time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="EW / method alternations per cell")
    a = ap.parse_args()
    cfg = ExperimentConfig(device="cpu")
    built = build_all(cfg, ("train",))
    ds = built["datasets"]["train"]
    images, targets = ds.get_batch(list(range(cfg.optim.batch_size))) if hasattr(ds, "get_batch") else \
        collate([ds[i] for i in range(cfg.optim.batch_size)])
    step_time("ew", False, built, images, targets, a.steps)  # warm-up: allocator, oneDNN kernels
    base = step_time("ew", False, built, images, targets, a.steps)
    print(f"ew: {base * 1000:.1f} ms/step (batch {cfg.optim.batch_size}, {len(cfg.tasks)} tasks)")
    print("| method | kind | on parameters | on representation |\n| --- | --- | --- | --- |")
    worst = {"loss": 0.0, "param": 0.0, "rep": 0.0}
    for name in WEIGHTINGS.available():
        cls = WEIGHTINGS.get(name)
        cells = []
        for rep in (False, True):
            ok = cls.supports_rep if rep else cls.supports_params
            if cls.kind == "loss" and rep:
                ok = False
            if not ok:
                cells.append("-")
                continue
            # side by side with EW, in turn, so drifts in the machine's load hit both alike
            ew, own = [], []
            for _ in range(a.rounds):
                ew.append(step_time("ew", False, built, images, targets, a.steps))
                own.append(step_time(name, rep, built, images, targets, a.steps))
            r = min(own) / min(ew)
            key = "loss" if cls.kind == "loss" else ("rep" if rep else "param")
            worst[key] = max(worst[key], r)
            cells.append(f"{r:.2f}")
        print(f"| {name} | {cls.kind} | {cells[0]} | {cells[1]} |", flush=True)
    t = len(cfg.tasks)
    print(f"worst ratio: loss-based {worst['loss']:.2f} (target 1.1), gradient on representation {worst['rep']:.2f} "
          f"(target 1.5), gradient on parameters {worst['param']:.2f} (target {t + 1})")


if __name__ == "__main__":
    main()
