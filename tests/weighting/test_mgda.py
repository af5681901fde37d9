import itertools

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.weighting.grad_utils import gram
from mtl_core.weighting.mgda import MGDA
from mtl_core.weighting.min_norm import min_norm_2, min_norm_weights


def combine(grads, **params):
    return MGDA([f"t{i}" for i in range(len(grads))], params=params).combine_grads(
        torch.tensor(grads), torch.ones(len(grads)), 0)


def test_orthogonal_unit_gradients_meet_in_the_middle():
    g, w = combine([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(g, torch.tensor([0.5, 0.5]))


def test_collinear_gradients_give_the_shorter_one():
    g, w = combine([[1.0, 0.0], [2.0, 0.0]])
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(g, torch.tensor([1.0, 0.0]))


def test_two_task_closed_form():
    # ||(1-c) a + c b||^2 is smallest at c = (aa - ab) / ||a - b||^2 = 4/5 for a=(2,0), b=(0,1)
    assert min_norm_2(4.0, 0.0, 1.0) == pytest.approx(0.8)
    g, _ = combine([[2.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(g, torch.tensor([0.4, 0.8]))


def test_frank_wolfe_matches_a_grid_search_over_the_simplex():
    torch.manual_seed(0)
    grads = torch.randn(3, 6) + torch.tensor([1.0, 0, 0, 0, 0, 0])
    m = gram(grads)
    w = min_norm_weights(m)
    assert w.min() >= 0 and float(w.sum()) == pytest.approx(1.0)
    best = float("inf")
    steps = 200
    for i, j in itertools.product(range(steps + 1), repeat=2):
        if i + j <= steps:
            v = torch.tensor([i, j, steps - i - j], dtype=torch.float64) / steps
            best = min(best, float(v @ m @ v))
    found = float(w @ m @ w)
    assert found <= best + 1e-6  # at least as good as every grid point
    assert found >= best - 1e-2 * float(m.diagonal().max()) / steps  # and the grid is close to it


def test_pareto_stationary_point_gives_a_zero_update():
    # the origin is inside the triangle of these three gradients: no direction helps all tasks
    g, w = combine([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(g.norm()) < 1e-3
    torch.testing.assert_close(w, torch.tensor([0.5, 0.25, 0.25]), atol=1e-3, rtol=0)


def test_l2_normalisation_balances_gradient_sizes():
    raw, _ = combine([[10.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(raw, torch.tensor([10 / 101, 100 / 101]))  # pulled to the small gradient
    g, w = combine([[10.0, 0.0], [0.0, 1.0]], normalize=1.0)
    torch.testing.assert_close(g, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(w, torch.tensor([0.05, 0.5]))  # weights on the raw gradients


def test_unknown_normaliser_is_refused():
    with pytest.raises(ConfigError, match="normalize"):
        MGDA(["a", "b"], params={"normalize": 7.0})
