"""UW (Kendall et al. 2018): the learned variances measure each task's noise."""
import math

import torch
from torch import nn

from mtl_core.weighting.base import StepContext
from mtl_core.weighting.uw import UncertaintyWeighting


def test_noisier_task_learns_larger_variance_and_smaller_weight():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    model = nn.Linear(5, 2)  # shared layer; output t predicts task t
    method = UncertaintyWeighting(["clean", "noisy"])
    opt = torch.optim.Adam(list(model.parameters()) + list(method.parameters()), lr=0.1)
    for step in range(200):
        x = torch.randn(128, 5, generator=g)  # (B, 5)
        y_clean = x @ a + 0.1 * torch.randn(128, generator=g)  # noise variance 0.01
        y_noisy = x @ b + 2.0 * torch.randn(128, generator=g)  # noise variance 4
        pred = model(x)  # (B, 2)
        losses = {"clean": ((pred[:, 0] - y_clean) ** 2).mean(), "noisy": ((pred[:, 1] - y_noisy) ** 2).mean()}
        opt.zero_grad()
        weights = method.combine(losses, list(model.parameters()), StepContext(step))
        opt.step()
    var = method.log_var.detach().exp()
    assert weights["noisy"] < weights["clean"] / 50
    # at the optimum exp(s_t) is the task's mean squared error, i.e. its noise variance
    assert math.isclose(var[0].item(), 0.01, rel_tol=0.5)
    assert math.isclose(var[1].item(), 4.0, rel_tol=0.3)


def test_total_and_its_gradients_are_kendall_eq7_by_hand():
    # s = log sigma^2 = [0, log 4], i.e. sigma^2 = [1, 4], sigma = [1, 2]; losses [2, 8]
    method = UncertaintyWeighting(["a", "b"])
    method.log_var.data = torch.tensor([0.0, math.log(4.0)])
    losses = torch.tensor([2.0, 8.0], requires_grad=True)
    total, w = method.fuse(losses, 0, [])
    # Eq. 7: sum L / (2 sigma^2) + log sigma = (2/2 + 0) + (8/8 + log 2)
    assert math.isclose(total.item(), 2.0 + math.log(2.0), rel_tol=1e-6)
    # the reported weight is 1 / (2 sigma^2), and it is what multiplies each loss
    assert torch.allclose(w, torch.tensor([0.5, 0.125]))
    total.backward()
    assert torch.allclose(losses.grad, torch.tensor([0.5, 0.125]))
    # d/ds (0.5 e^-s L + 0.5 s) = 0.5 - 0.5 e^-s L = [0.5 - 1, 0.5 - 1]
    assert torch.allclose(method.log_var.grad, torch.tensor([-0.5, -0.5]))


def test_optimum_log_variance_is_the_log_of_the_loss():
    losses = torch.tensor([0.3, 2.0, 50.0])  # (T,)
    method = UncertaintyWeighting(["a", "b", "c"])
    method.log_var.data = torch.log(losses)  # s* = log L, i.e. sigma^2 = L
    total, _ = method.fuse(losses, 0, [])
    total.backward()
    assert method.log_var.grad.abs().max() < 1e-6  # stationary there
    # and gradient descent on s from 0 goes there
    method = UncertaintyWeighting(["a", "b", "c"])
    opt = torch.optim.SGD(method.parameters(), lr=0.5)
    for step in range(400):
        opt.zero_grad()
        method.fuse(losses, step, [])[0].backward()
        opt.step()
    torch.testing.assert_close(method.log_var.detach(), torch.log(losses), atol=1e-4, rtol=0)
