"""GradNorm (Chen et al. 2018): weights move toward the task that trains slower, and equalise
gradient norms between tasks of different scale."""
import pytest
import torch

from mtl_core.weighting.gradnorm import GradNorm


def losses_on(W, scales):
    # L_t = c_t ||W e_t||^2 with ||W e_t|| = 1: grad norm on W is 2 c_t, loss value is c_t
    return torch.stack([c * (W[:, t] ** 2).sum() for t, c in enumerate(scales)])  # (T,)


def test_task_whose_loss_stalls_gets_more_weight():
    W = torch.eye(2, requires_grad=True)
    method = GradNorm(["learns", "stalls"])
    for step in range(30):
        losses = losses_on(W, [0.95 ** step, 1.0])  # equal gradients at the start
        _, w = method.fuse(losses, step, [W])
    final = method.w.detach()
    assert final[1] > 1.2 > 0.8 > final[0]
    assert final.sum().item() == pytest.approx(2.0)


def test_gradient_norms_are_balanced_when_both_train_at_the_same_rate():
    W = torch.eye(2, requires_grad=True)
    method = GradNorm(["big", "small"])
    for step in range(300):
        method.fuse(losses_on(W, [10.0, 1.0]), step, [W])
    w = method.w.detach().tolist()  # floats: pytest.approx refuses 0-d tensors from pytest 9.2 on
    # G_t = w_t * 2 c_t: equal when w_small is about 10 times w_big
    assert w[0] * 10.0 == pytest.approx(w[1] * 1.0, rel=0.2)


def test_measures_the_last_shared_weight_not_a_bias():
    from mtl_core.weighting.gradnorm import last_shared_weight

    first, last, bias = torch.zeros(3, 3), torch.zeros(2, 3), torch.zeros(2)
    frozen = torch.zeros(4, 4)
    for p in (first, last, bias):
        p.requires_grad_(True)
    assert last_shared_weight([first, last, bias, frozen]) is last
