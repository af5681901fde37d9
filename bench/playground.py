"""The gradient playground's speed on 2 cores, after a slider moves (a warm process: imports done).

Three figures, as issue 31 sets them:

1. the first redrawn frame: a new Simulation, its first chunk of steps (the page's
   ``FIRST_CHUNK``) and the figure built for it (target 150 ms);
2. 4 methods (EW, MGDA, PCGrad, CAGrad) x 5 starts x 1,000 steps to completion, on CAGrad's toy
   (target 1 s);
3. every method of the registry, 5 starts x 1,000 steps each, in one Simulation (target 10 s);
   the time of each method alone is printed too, so the slow ones are named.

Each figure is the best of ``--repeats``. The last line is figure 2, in ms.

    python bench/playground.py [--repeats 3] [--skip-all]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtl_core.playground import analysis  # noqa: E402
from mtl_core.playground.problems import get_problem  # noqa: E402
from mtl_core.playground.simulate import Simulation  # noqa: E402
from mtl_core.weighting import WEIGHTINGS  # noqa: E402

FOUR = ["ew", "mgda", "pcgrad", "cagrad"]
FIRST_CHUNK = 40  # pages/playground.py's


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-all", action="store_true", help="leave out figure 3 (the whole registry)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    problem = get_problem("cagrad_toy")
    ref, grid = analysis.reference(problem), analysis.contours(problem)
    from ui.live_plot import figure_json
    from ui.playground_charts import playground_figure  # plotly: the page's figure

    def first_frame() -> None:
        sim = Simulation(problem, FOUR, steps=1000)
        sim.advance(FIRST_CHUNK)
        figure_json(playground_figure(problem, ref, grid, sim.paths(), sim.starts, clickable=False, hover=False))

    def four() -> None:
        sim = Simulation(problem, FOUR, steps=1000)
        sim.run()

    first_frame(), four()  # warm: imports, first optimiser
    t_first = best(first_frame, a.repeats)
    print(f"first frame ({FIRST_CHUNK} steps of 4 methods x 5 starts, and its figure): {t_first * 1000:.0f} ms "
          f"(target 150)")
    t_four = best(four, a.repeats)
    print(f"4 methods x 5 starts x 1,000 steps: {t_four * 1000:.0f} ms (target 1,000)")
    if not a.skip_all:
        names = WEIGHTINGS.available()
        alone = {}
        for name in names:
            Simulation(problem, [name], steps=2).run()  # warm (a solver's first build)
            alone[name] = best(lambda n=name: Simulation(problem, [n], steps=1000).run(), 1)
        for name, t in sorted(alone.items(), key=lambda kv: -kv[1]):
            looped = "" if name in Simulation(problem, [name], steps=1).batched else "  (one start at a time)"
            print(f"  {name:<12} {t * 1000:7.0f} ms alone{looped}")
        t_all = best(lambda: Simulation(problem, names, steps=1000).run(), 1)
        print(f"all {len(names)} methods x 5 starts x 1,000 steps: {t_all:.1f} s (target 10)")
    print(f"{t_four * 1000:.0f}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
