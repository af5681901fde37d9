"""GLS (Chennupati et al. 2019): the total is the geometric mean; weights are its derivative."""
import pytest
import torch

from mtl_core.weighting.gls import GeometricLossStrategy


def test_total_is_geometric_mean_and_weights_are_its_derivative():
    losses = torch.tensor([1.0, 4.0, 16.0], requires_grad=True)
    total, w = GeometricLossStrategy(list("abc")).fuse(losses, 0, [])
    assert total.item() == pytest.approx(4.0)  # (1 * 4 * 16) ** (1/3)
    (grad,) = torch.autograd.grad(total, losses)
    assert torch.allclose(w, grad)
    # total / (T L_t): the smallest loss gets the largest weight
    assert torch.allclose(w, torch.tensor([4 / 3, 1 / 3, 1 / 12]))


def test_rescaling_one_loss_rescales_the_total_but_not_the_balance():
    method = GeometricLossStrategy(["a", "b"])
    base, w = method.fuse(torch.tensor([2.0, 3.0]), 0, [])
    scaled, w_scaled = method.fuse(torch.tensor([200.0, 3.0]), 0, [])
    assert scaled.item() == pytest.approx(base.item() * 10)
    # the gradient share, w_t L_t / total, is 1/T for every task whatever the scale
    assert (w_scaled * torch.tensor([200.0, 3.0]) / scaled).tolist() == pytest.approx([0.5, 0.5])
