"""Time per training step of every weighting method as a ratio to equal weighting (EW), on the
same batch, for the 3-task demo model; gradient methods on the shared parameters and, where
they allow it, on the shared representation.

Targets (issue 4): loss-based <= 1.1; gradient-based on the representation <= 1.5; on the
parameters <= T + 1 (T tasks). The last line names the worst ratio of each kind. A method that
takes several batches a step (MoDo, SDMGrad: double sampling) is compared per batch, at equal
images, and its cost a step is printed beside.

    python bench/method_cost.py [--steps 6] [--methods modo,sdmgrad]
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
from mtl_core.weighting import WEIGHTINGS, StepContext, build_weighting  # noqa: E402


def step_time(method: str, rep: bool, built, batches, steps: int) -> float:
    """The least-disturbed step of ``method``, run as the trainer runs it: a method that takes
    several batches a step (``batches_per_step``, MoDo, SDMGrad) gets that many, each forward
    run when the method takes it."""
    torch.manual_seed(0)
    model, tasks = built["model"], built["tasks"]
    w = build_weighting(method, list(tasks), rep_grad=rep)
    opt = torch.optim.AdamW(list(model.parameters()) + list(w.parameters()), lr=1e-4)
    shared = model.shared_parameters()
    k = w.batches_per_step

    def losses_of(images, targets):
        outputs, r = model.forward_train(images, rep_grad=rep)
        return {t: task.loss(outputs[t], targets[t]) for t, task in tasks.items()}, r

    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if k == 1:
            losses, r = losses_of(*batches[0])
            w.combine(losses, shared, StepContext(step=i, rep=r))
        else:
            w.combine((losses_of(*b)[0] for b in batches[:k]), shared, StepContext(step=i))
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return min(times)  # the least-disturbed step: a neighbour only ever adds time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2, help="EW / method alternations per cell")
    ap.add_argument("--methods", default="", help="comma-separated names (default: every registered method)")
    a = ap.parse_args()
    cfg = ExperimentConfig(device="cpu")
    built = build_all(cfg, ("train",))
    ds = built["datasets"]["train"]
    b = cfg.optim.batch_size
    most = max(WEIGHTINGS.get(n).batches_per_step for n in WEIGHTINGS.available())
    batches = [ds.get_batch(list(range(j * b, (j + 1) * b))) if hasattr(ds, "get_batch") else
               collate([ds[i] for i in range(j * b, (j + 1) * b)]) for j in range(most)]
    step_time("ew", False, built, batches, a.steps)  # warm-up: allocator, oneDNN kernels
    base = step_time("ew", False, built, batches, a.steps)
    print(f"ew: {base * 1000:.1f} ms/step (batch {cfg.optim.batch_size}, {len(cfg.tasks)} tasks)")
    print("| method | kind | on parameters | on representation |\n| --- | --- | --- | --- |")
    worst = {"loss": 0.0, "param": 0.0, "rep": 0.0}
    for name in [m for m in a.methods.split(",") if m] or WEIGHTINGS.available():
        cls = WEIGHTINGS.get(name, "--methods")
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
                ew.append(step_time("ew", False, built, batches, a.steps))
                own.append(step_time(name, rep, built, batches, a.steps))
            r = min(own) / min(ew) / cls.batches_per_step  # per batch: a multi-batch step sees k times the images
            key = "loss" if cls.kind == "loss" else ("rep" if rep else "param")
            worst[key] = max(worst[key], r)
            cells.append(f"{r:.2f}" if cls.batches_per_step == 1 else
                         f"{r:.2f} a batch ({r * cls.batches_per_step:.2f} a step of {cls.batches_per_step} batches)")
        print(f"| {name} | {cls.kind} | {cells[0]} | {cells[1]} |", flush=True)
    t = len(cfg.tasks)
    print(f"worst ratio: loss-based {worst['loss']:.2f} (target 1.1), gradient on representation {worst['rep']:.2f} "
          f"(target 1.5), gradient on parameters {worst['param']:.2f} (target {t + 1})")


if __name__ == "__main__":
    main()
