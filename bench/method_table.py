"""Train every weighting method on the default demo config with the same budget and seed, and
print a markdown table: method, each task's primary metric (test split, final model), Δm against
single-task baselines trained on the same budget, seconds, and relative step cost (to EW).

The last line names the best method and its Δm.

    python bench/method_table.py [--steps 300] [--methods ew,uw,pcgrad]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.config import ExperimentConfig  # noqa: E402
from mtl_core.scores import delta_m  # noqa: E402
from mtl_core.store.store import RunStore  # noqa: E402
from mtl_core.tasks import TASKS  # noqa: E402
from mtl_core.training.loop import Trainer  # noqa: E402
from mtl_core.weighting import WEIGHTINGS  # noqa: E402


def train(store: RunStore, cfg: ExperimentConfig) -> tuple[dict[str, float], float, float]:
    """Test-split primary metrics, wall seconds and seconds per step of one run."""
    rid = store.create_run(cfg.to_dict(), cfg.name, "bench", cfg.optim.steps)
    t0 = time.time()
    Trainer(cfg, store, rid).run()
    seconds = time.time() - t0
    run = store.get_run(rid)
    if run["status"] != "finished":
        return {}, seconds, float("nan")
    test = {k: v for _, _, k, v, _ in store.metrics(rid, "test")}
    primary = {t: test.get(f"{t}/{TASKS.get(t).primary}", float("nan")) for t in cfg.tasks}
    rate = run["info"].get("images_per_s") or float("nan")
    return primary, seconds, cfg.optim.batch_size / rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--methods", default="", help="comma-separated subset (default: every registered method)")
    a = ap.parse_args()
    base = ExperimentConfig(device="cpu", eval_every=10**9, checkpoint_every=0, gradstats_every=0)
    base = dataclasses.replace(base, optim=dataclasses.replace(base.optim, steps=a.steps))
    methods = [m for m in a.methods.split(",") if m] or WEIGHTINGS.available()
    higher = {t: TASKS.get(t).higher_is_better for t in base.tasks}
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(d)
        single: dict[str, float] = {}
        for cfg in base.single_task_baselines("bench"):
            primary, _, _ = train(store, cfg)
            single.update(primary)
        rows = []
        ew_step = None
        for m in ["ew"] + [x for x in methods if x != "ew"]:
            cfg = dataclasses.replace(base, name=m, weighting=dataclasses.replace(base.weighting, method=m))
            primary, seconds, step = train(store, cfg)
            ew_step = ew_step or step
            rows.append((m, primary, delta_m(primary, single, higher), seconds, step / ew_step))
            print(f"  {m}: {primary} Δm={rows[-1][2]}", file=sys.stderr, flush=True)
    tasks = list(base.tasks)
    head = " | ".join(f"{t} {TASKS.get(t).primary}" for t in tasks)
    print(f"| method | {head} | Δm % | seconds | step cost |")
    print("|" + " --- |" * (len(tasks) + 4))
    singles = " | ".join(f"{single.get(t, float('nan')):.3f}" for t in tasks)
    print(f"| single-task | {singles} | 0 | | |")
    for m, primary, dm, seconds, cost in rows:
        cells = " | ".join(f"{primary.get(t, float('nan')):.3f}" for t in tasks)
        dms = "failed" if dm is None else f"{dm:+.2f}"
        print(f"| {m} | {cells} | {dms} | {seconds:.0f} | {cost:.2f} |")
    scored = [(dm, m) for m, _, dm, _, _ in rows if dm is not None]
    best_dm, best = max(scored)
    print(f"best method: {best} with Δm {best_dm:+.2f}% against single-task baselines ({a.steps} steps each)")


if __name__ == "__main__":
    main()
