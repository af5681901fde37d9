"""The papers' toy problems as their public code defines them, and a person's own."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.playground.problems import (
    CAGRAD_PARETO_Y,
    CQF_A,
    CQF_U,
    LOWER,
    PROBLEMS,
    get_problem,
    typed_problem,
)


def cagrad_public(x1, x2):
    """github.com/Cranial-XIX/CAGrad, toy.py, ``Toy.batch_forward``, line for line."""
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOWER).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOWER).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    f2_sq = ((-x1 - 7).pow(2) + 0.1 * (-x2 - 8).pow(2)) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2], 1)


def test_cagrad_s_toy_is_its_public_code_values_and_gradients():
    p = get_problem("cagrad_toy")
    rng = np.random.default_rng(1)
    pts = rng.uniform(-10, 10, (400, 2))
    pts[:, 1][np.abs(pts[:, 1]) < 1e-3] = 0.5  # away from y = 0, where the clamp's gradient differs (documented)
    t = torch.tensor(pts, requires_grad=True)
    ref = cagrad_public(t[:, 0], t[:, 1])
    grads = torch.stack([torch.autograd.grad(ref[:, i].sum(), t, retain_graph=True)[0] for i in range(2)], 1)
    values, ours = p.values_and_grads(pts)
    np.testing.assert_allclose(values, ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours, grads.numpy(), rtol=1e-7, atol=1e-9)
    # the Pareto set's ends are the two bowls' minima; its middle the average optimum
    ends = np.array([[-7.0, CAGRAD_PARETO_Y], [7.0, CAGRAD_PARETO_Y]])
    _, g = p.values_and_grads(ends)
    assert np.linalg.norm(g[0, 1]) < 5e-3 and np.linalg.norm(g[1, 0]) < 5e-3  # (y = -8.3552: 4 decimals)
    _, g = p.values_and_grads(np.array([[0.0, CAGRAD_PARETO_Y]]))
    assert np.linalg.norm(g[0].mean(0)) < 5e-3


def test_the_convex_quadratic_form_s_set_minimises_every_weighted_sum():
    p = get_problem("convex_quadratic_form")
    pset = p.pareto_set()
    np.testing.assert_allclose(pset[0], CQF_U[1]) and np.testing.assert_allclose(pset[-1], CQF_U[0])
    _, g = p.values_and_grads(pset[1:-1])
    cos = (g[:, 0] * g[:, 1]).sum(1) / np.linalg.norm(g[:, 0], axis=1) / np.linalg.norm(g[:, 1], axis=1)
    assert (cos < -1 + 1e-9).all()  # the two gradients point exactly against each other: Pareto-stationary
    a0 = CQF_A[0]
    assert np.isclose(p.evaluate([[1.0, -1.0]])[0, 0], 0.0) and np.isclose(a0[0, 1], -0.05)


def test_every_problem_draws_and_has_finite_losses_at_its_starts():
    for name in PROBLEMS.available():
        p = get_problem(name)
        for starts in p.starts.values():
            values, grads = p.values_and_grads(np.asarray(starts))
            assert np.isfinite(values).all() and np.isfinite(grads).all(), name
        assert p.citation and p.about and len(p.tasks) in (2, 3)


def test_a_typed_problem_needs_two_or_three_finite_losses():
    p = typed_problem(["(x-1)**2 + y**2", "(x+1)**2 + y**2"])
    assert p.tasks == ("L1", "L2") and p.pareto_set is None
    with pytest.raises(ConfigError, match="two or three"):
        typed_problem(["x**2"])
    with pytest.raises(ConfigError) as err:
        typed_problem(["x**2", "log(-1 - x**2)"])
    assert err.value.field == "playground.expressions[1]" and "not a finite number anywhere" in str(err.value)
    with pytest.raises(ConfigError, match="not a box"):
        typed_problem(["x", "y"], box=(1, 0, 0, 1))
