"""CAGrad's Fig. 1, reproduced (Liu et al., NeurIPS 2021; its public toy.py): from the paper's three
starting points, Adam with small steps, the paths of EW (the paper's "GD"), MGDA, PCGrad and
CAGrad end where the figure shows them:

- EW gets stuck from the two upper starts, in the log valley of one task above y = 0, and reaches
  the average optimum only from the lower-left start;
- MGDA and PCGrad reach the Pareto set from every start, but stop at points of it far from the
  average optimum (each start its own point);
- CAGrad reaches the average optimum from every start.

The paper ran Adam with lr 0.001 for 100,000 steps (about two minutes here; ``python -m mtl_core
playground --start-set "CAGrad paper's three" --paper`` gives the same picture: EW stuck at
(-5.05, 2.16) and (5.04, 2.32), MGDA at x = -3.32, -6.99, 3.33, PCGrad at -2.35, -6.43, 2.08, CAGrad at
(0, -8.36) from all three). This test runs lr 0.003 for 30,000 steps, the same distance in three
times fewer steps, and the same ends."""
from __future__ import annotations

import numpy as np

from mtl_core.playground import analysis
from mtl_core.playground.problems import CAGRAD_PARETO_Y, get_problem
from mtl_core.playground.simulate import Simulation


def test_the_paths_end_where_cagrad_s_figure_1_shows_them():
    problem = get_problem("cagrad_toy")
    starts = problem.starts["CAGrad paper's three"]
    assert starts == ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
    paths = Simulation(problem, ["ew", "mgda", "pcgrad", "cagrad"], starts=starts, lr=0.003, steps=30_000,
                       optimizer="adam").run()
    rows = analysis.endpoints(problem, paths, analysis.reference(problem))
    end = {(r["method"], r["start"]): r for r in rows}
    opt = np.array([0.0, CAGRAD_PARETO_Y])

    # EW: stuck above y = 0 from the upper starts, on their own side; the optimum from the lower one
    for start, side in ((1, -1), (3, 1)):
        r = end["ew", start]
        assert r["end_y"] > 0 and np.sign(r["end_x"]) == side and not r["on_pareto_set"], r
    assert end["ew", 2]["distance_to_average_optimum"] < 0.05
    # MGDA and PCGrad: on the Pareto set from every start, three different points, away from the optimum
    for method in ("mgda", "pcgrad"):
        got = [end[method, s] for s in (1, 2, 3)]
        assert all(r["on_pareto_set"] for r in got), got
        xs = sorted(r["end_x"] for r in got)
        assert min(np.diff(xs)) > 1.0 and sum(abs(x) > 1.5 for x in xs) == 3, xs
        assert end[method, 1]["end_x"] < 0 < end[method, 3]["end_x"]  # each keeps to its start's side
    # CAGrad: the average optimum from every start
    for s in (1, 2, 3):
        assert np.linalg.norm(np.array([end["cagrad", s]["end_x"], end["cagrad", s]["end_y"]]) - opt) < 0.2
    assert analysis.nearest_to_optimum(rows) == ["cagrad"]
