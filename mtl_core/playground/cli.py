"""``python -m mtl_core playground``: every chosen method's path on a toy problem, as a CSV.

    python -m mtl_core playground --problem cagrad_toy --methods ew,mgda,pcgrad,cagrad --out paths.csv
    python -m mtl_core playground --expr "(x-1)**2 + y**2" --expr "(x+1)**2 + y**2" --methods all

It prints where each path ended (on the Pareto set or not, its distance to the average-loss
optimum, the step it settled at); its last line names the method that ends nearest that optimum.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from mtl_core.errors import ConfigError
from mtl_core.playground.analysis import endpoints, nearest_to_optimum, reference
from mtl_core.playground.problems import PROBLEMS, get_problem, typed_problem
from mtl_core.playground.simulate import OPTIMIZERS, Paths, Simulation
from mtl_core.weighting import WEIGHTINGS


def add_parser(sub) -> None:
    p = sub.add_parser("playground", help="every weighting method's path on the MTL papers' two-parameter toys, as CSV")
    p.add_argument("--problem", default="cagrad_toy", help=f"one of: {', '.join(PROBLEMS.available())}")
    p.add_argument("--expr", action="append", default=[], help="a task loss in x and y (two or three of them: "
                   "your own problem instead of --problem)")
    p.add_argument("--box", help="your problem's box: xmin,xmax,ymin,ymax (default -5,5,-5,5)")
    p.add_argument("--methods", default="ew,mgda,pcgrad,cagrad", help="comma-separated weighting methods, or 'all'")
    p.add_argument("--starts", help="starting points, --starts=x,y;x,y;... (with =: a point may start with a minus)")
    p.add_argument("--start-set", help="one of the problem's named sets of starting points")
    p.add_argument("--lr", type=float, help="step size (default: the problem's)")
    p.add_argument("--steps", type=int, help="number of steps (default: the problem's)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default: the problem's")
    p.add_argument("--paper", action="store_true", help="the paper's own optimiser, step size and number of steps "
                   "(CAGrad's toy: Adam, 0.001, 100,000 steps; about 2 minutes for 4 methods)")
    p.add_argument("--scales", help="each task's loss multiplied by: s1,s2[,s3]")
    p.add_argument("--param", action="append", default=[], help="a method's parameter: METHOD.NAME=VALUE (cagrad.c=0.5)")
    p.add_argument("--out", type=Path, help="write every step of every path here (CSV)")


def _floats(text: str, field: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ConfigError(field, f"{text!r} is not a list of numbers separated by commas") from None


def parse_starts(text: str) -> list[tuple[float, float]]:
    points = []
    for part in text.split(";"):
        xy = _floats(part, "playground.starts")
        if len(xy) != 2:
            raise ConfigError("playground.starts", f"{part!r} is not a point x,y; give points as x,y;x,y")
        points.append((xy[0], xy[1]))
    return points


def parse_params(items: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for item in items:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if not (method and name and value):
            raise ConfigError("playground.param", f"{item!r}: write METHOD.NAME=VALUE, e.g. cagrad.c=0.5")
        out.setdefault(method, {})[name] = _floats(value, "playground.param")[0]
    return out


def write_csv(path: Path, paths: Paths) -> int:
    """Every step of every path: method, start, step, x, y, each task's loss, weight, and the update."""
    tasks = list(paths.tasks)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "start", "step", "x", "y", *(f"loss_{t}" for t in tasks), *(f"weight_{t}" for t in tasks),
                    "update_x", "update_y"])
        for k, method in enumerate(paths.methods):
            for i in range(len(paths.starts)):
                for n in range(paths.steps + 1):
                    x, y = paths.positions[k, i, n]
                    weights = paths.weights[k, i, n] if n < paths.steps else np.full(len(tasks), np.nan)
                    update = paths.updates[k, i, n] if n < paths.steps else (np.nan, np.nan)
                    w.writerow([method, i + 1, n, f"{x:.6g}", f"{y:.6g}",
                                *(f"{v:.6g}" for v in paths.losses[k, i, n]), *(f"{v:.6g}" for v in weights),
                                f"{update[0]:.6g}", f"{update[1]:.6g}"])
                    rows += 1
    return rows


def main(a: argparse.Namespace) -> int:
    if a.expr:
        box = _floats(a.box, "playground.box") if a.box else [-5.0, 5.0, -5.0, 5.0]
        if len(box) != 4:
            raise ConfigError("playground.box", f"{a.box!r}: give xmin,xmax,ymin,ymax")
        problem = typed_problem(a.expr, box=tuple(box))
    else:
        problem = get_problem(a.problem)
    methods = WEIGHTINGS.available() if a.methods.strip() == "all" else [m.strip() for m in a.methods.split(",") if m.strip()]
    if a.starts:
        starts = parse_starts(a.starts)
    elif a.start_set:
        if a.start_set not in problem.starts:
            raise ConfigError("playground.start_set", f"{a.start_set!r} is not one of {', '.join(problem.starts)}")
        starts = problem.starts[a.start_set]
    else:
        starts = None
    scales = _floats(a.scales, "playground.scales") if a.scales else None
    optimizer, lr, steps = a.optimizer, a.lr, a.steps
    if a.paper and problem.paper:
        optimizer, lr, steps = (optimizer or problem.paper[0]), (lr or problem.paper[1]), (steps or problem.paper[2])
    began = time.perf_counter()
    sim = Simulation(problem, methods, starts=starts, lr=lr, steps=steps, optimizer=optimizer, scales=scales,
                     params=parse_params(a.param))
    paths = sim.run()
    took = time.perf_counter() - began
    ref = reference(problem, None if scales is None else np.asarray(scales))
    rows = endpoints(problem, paths, ref, None if scales is None else np.asarray(scales))
    print(f"{problem.title}: {len(methods)} method(s) x {len(paths.starts)} start(s) x {paths.steps} steps "
          f"({sim.optimizer}, lr {sim.lr:g}) in {took:.2f} s; average optimum at "
          f"({ref.average_optimum[0]:.3g}, {ref.average_optimum[1]:.3g})")
    print(f"{'method':<12} {'start':>14} {'end':>18} {'Pareto set':>10} {'to optimum':>10} {'settled at':>10}")
    for r in rows:
        end = "diverged" if r["diverged"] else f"({r['end_x']:.3g}, {r['end_y']:.3g})"
        start = f"({r['start_x']:.3g}, {r['start_y']:.3g})"
        print(f"{r['method']:<12} {start:>14} {end:>18} "
              f"{'on' if r['on_pareto_set'] else 'off':>10} {r['distance_to_average_optimum']:>10.3g} "
              f"{r['settled_at_step']:>10}")
    if a.out:
        n = write_csv(a.out, paths)
        print(f"paths written to {a.out} ({n} rows)")
    print("nearest the average optimum: " + ", ".join(nearest_to_optimum(rows)))
    return 0
