"""UW (Kendall et al. 2018): the learned variances measure each task's noise."""
import math

import torch
from torch import nn

from mtl_core.weighting.uw import UncertaintyWeighting


def test_noisier_task_learns_larger_variance_and_smaller_weight():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    model = nn.Linear(5, 2)  # shared layer; output t predicts task t
    method = UncertaintyWeighting(["clean", "noisy"])
    opt = torch.optim.Adam(list(model.parameters()) + method.parameters(), lr=0.1)
    for step in range(200):
        x = torch.randn(128, 5, generator=g)  # (B, 5)
        y_clean = x @ a + 0.1 * torch.randn(128, generator=g)  # noise variance 0.01
        y_noisy = x @ b + 2.0 * torch.randn(128, generator=g)  # noise variance 4
        pred = model(x)  # (B, 2)
        losses = {"clean": ((pred[:, 0] - y_clean) ** 2).mean(), "noisy": ((pred[:, 1] - y_noisy) ** 2).mean()}
        opt.zero_grad()
        weights = method.combine(losses, list(model.parameters()), step)
        opt.step()
    var = method.log_var.detach().exp()
    assert weights["noisy"] < weights["clean"] / 50
    # at the optimum exp(s_t) is the task's mean squared error, i.e. its noise variance
    assert math.isclose(var[0].item(), 0.01, rel_tol=0.5)
    assert math.isclose(var[1].item(), 4.0, rel_tol=0.3)


def test_total_is_precision_weighted_loss_plus_log_variance():
    method = UncertaintyWeighting(["a", "b"])
    method.log_var.data = torch.tensor([0.0, math.log(4.0)])
    total, w = method.fuse(torch.tensor([2.0, 8.0]), 0, [])
    assert torch.allclose(w, torch.tensor([1.0, 0.25]))
    assert math.isclose(total.item(), 2.0 + 2.0 + math.log(4.0), rel_tol=1e-6)
