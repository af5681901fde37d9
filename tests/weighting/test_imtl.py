"""IMTL (Liu et al., ICLR 2021), both halves: the heads and the scales s_t are trained on
exp(s_t) L_t - s_t (IMTL-L), the shared parameters get IMTL-G's combination; hand computation."""
import math

import torch
from torch import nn

from mtl_core.weighting.base import StepContext
from mtl_core.weighting.imtl import IMTL


def test_one_step_by_hand():
    # shared theta = (1, 1), a head h = 1 for task a: L_a = 3 h theta_x = 3 (grad on theta (3, 0)),
    # L_b = theta_y^2 = 1 (grad (0, 2)). Scales s = (ln 2, 0): exp(s) = (2, 1), so the scaled
    # gradients are (6, 0) and (0, 2); IMTL-G on them: alpha_a 6 = alpha_b 2, alpha_a + alpha_b = 1
    # -> alpha = (1/4, 3/4), shared grad (1.5, 1.5) = 0.5 (3, 0) + 0.75 (0, 2): reported (0.5, 0.75).
    # d/ds (exp(s) L - s) = exp(s) L - 1 = (2 * 3 - 1, 1 - 1) = (5, 0); the head gets exp(s_a) dL_a/dh = 6.
    theta, head = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(()))
    method = IMTL(["a", "b"])
    method.scale.data = torch.tensor([math.log(2.0), 0.0])
    losses = {"a": 3 * head * theta[0], "b": theta[1] ** 2}
    weights = method.combine(losses, [theta], StepContext(0))
    torch.testing.assert_close(theta.grad, torch.tensor([1.5, 1.5]))
    assert abs(weights["a"] - 0.5) < 1e-6 and abs(weights["b"] - 0.75) < 1e-6
    torch.testing.assert_close(method.scale.grad, torch.tensor([5.0, 0.0]))
    torch.testing.assert_close(head.grad, torch.tensor(6.0))


def test_the_scales_are_trained_saved_and_restored():
    method = IMTL(["a", "b"])
    assert list(method.parameters()) == [method.scale]
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    theta = nn.Parameter(torch.ones(2))
    for step in range(2):  # L_a = 4 theta_x = 4: s_a moves by -lr (e^0 4 - 1) = -0.3 the first step
        opt.zero_grad()
        method.combine({"a": 4 * theta[0], "b": theta[1]}, [theta], StepContext(step))
        opt.step()
    s = method.scale.detach()  # second step: -0.3 - 0.1 (e^-0.3 4 - 1) = -0.496
    assert abs(float(s[0]) + 0.496) < 1e-3 and abs(float(s[1])) < 1e-6  # L_b = 1 is already balanced
    restored = IMTL(["a", "b"])
    restored.load_state_dict(method.state_dict())
    torch.testing.assert_close(restored.scale.data, method.scale.data)
