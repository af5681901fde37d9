"""Where paths end, measured: the Pareto set (closed form or on a grid), the distance to it, Pareto
stationarity, the average optimum, and which method ends nearest it."""
from __future__ import annotations

import numpy as np

from mtl_core.playground import analysis
from mtl_core.playground.problems import get_problem, typed_problem
from mtl_core.playground.simulate import Simulation


def test_non_dominated_rows_by_hand():
    two = np.array([[1.0, 5.0], [2.0, 3.0], [3.0, 4.0], [4.0, 1.0], [2.0, 3.0], [5.0, 1.0]])
    assert sorted(analysis.non_dominated(two).tolist()) == [0, 1, 3]  # a tie keeps one; (5, 1) is beaten by (4, 1)
    three = np.array([[1.0, 1, 1], [0, 2, 2], [2, 2, 0], [2, 2, 2], [np.nan, 0, 0]])
    assert sorted(analysis.non_dominated(three).tolist()) == [0, 1, 2]


def test_a_typed_problem_s_set_and_optimum_are_found_on_the_grid():
    p = typed_problem(["(x-1)**2 + y**2", "(x+1)**2 + y**2"])
    ref = analysis.reference(p)
    assert ref.from_grid and np.abs(ref.pareto_set[:, 1]).max() < 1e-9
    assert ref.pareto_set[:, 0].min() >= -1 - 1e-9 and ref.pareto_set[:, 0].max() <= 1 + 1e-9
    np.testing.assert_allclose(ref.average_optimum, [0.0, 0.0], atol=1e-6)
    d = analysis.distance_to_set(ref, np.array([[0.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    assert d[0] < 0.05 and abs(d[1] - 2) < 0.05 and abs(d[2] - 2) < 0.05


def test_inside_the_three_bowls_triangle_is_on_the_set():
    p = get_problem("three_bowls")
    ref = analysis.reference(p)
    d = analysis.distance_to_set(ref, np.array([[0.0, 0.0], [-4.0, -3.0], [0.0, -5.0]]))
    assert d[0] == 0 and d[1] < 1e-9 and abs(d[2] - 2.0) < 1e-6


def test_stationarity_is_zero_where_the_gradients_cancel_and_one_where_they_agree():
    p = typed_problem(["(x-1)**2 + y**2", "(x+1)**2 + y**2"])
    s = analysis.stationarity(p, np.array([[0.0, 0.0], [0.5, 0.0], [0.0, 3.0]]))
    assert s[0] < 1e-12 and s[1] < 1e-12 and s[2] > 0.9


def test_ew_ends_at_the_three_bowls_average_optimum_and_mgda_on_a_corner():
    p = get_problem("three_bowls")
    paths = Simulation(p, ["ew", "mgda"], steps=800).run()
    rows = analysis.endpoints(p, paths, analysis.reference(p))
    ew = [r for r in rows if r["method"] == "ew"]
    assert all(r["on_pareto_set"] and r["distance_to_average_optimum"] < 1e-3 for r in ew)
    corner = next(r for r in rows if r["method"] == "mgda" and (r["start_x"], r["start_y"]) == (-9.0, -2.0))
    assert abs(corner["end_x"] + 4) < 0.01 and abs(corner["end_y"] + 3) < 0.01 and corner["on_pareto_set"]
    assert corner["stationarity"] < 1e-6 and 0 < corner["settled_at_step"] < 800
    assert analysis.nearest_to_optimum(rows) == ["ew"]
