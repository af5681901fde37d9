import math

import torch

from mtl_core.weighting.cagrad import CAGrad


def test_c_zero_is_the_mean_gradient_exactly():
    torch.manual_seed(0)
    grads = torch.randn(3, 7)
    g, w = CAGrad(list("abc"), params={"c": 0.0}).combine_grads(grads, torch.ones(3), 0)
    assert torch.equal(g, grads.mean(0))
    torch.testing.assert_close(w, torch.full((3,), 1 / 3))


def test_conflict_with_the_mean_is_resolved_inside_the_ball():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.2, 1.0])
    grads = torch.stack([g1, g2])
    g0 = grads.mean(0)
    assert float(g0 @ g1) < 0  # the plain average hurts task 1
    c = 0.5
    g, _ = CAGrad(["a", "b"], params={"c": c, "rescale": 0.0}).combine_grads(grads, torch.ones(2), 0)
    assert float(g @ g1) >= 0 and float(g @ g2) >= 0
    assert float((g - g0).norm()) <= c * float(g0.norm()) + 1e-5
    # and it is the best point of the ball for the worst task (brute force over its boundary)
    angles = torch.arange(3600) * math.pi / 1800
    boundary = g0 + c * g0.norm() * torch.stack([angles.cos(), angles.sin()], dim=1)  # (3600, 2)
    best = float(torch.minimum(boundary @ g1, boundary @ g2).max())
    assert min(float(g1 @ g), float(g2 @ g)) >= best - 1e-3


def test_default_rescale_divides_by_one_plus_c_squared():
    grads = torch.tensor([[1.0, 0.0], [-1.2, 1.0]])
    raw, _ = CAGrad(["a", "b"], params={"rescale": 0.0}).combine_grads(grads, torch.ones(2), 0)
    g, _ = CAGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, raw / 1.25)
