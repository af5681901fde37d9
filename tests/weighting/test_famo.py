"""FAMO (Liu et al. 2023): the task whose loss falls slower gains weight."""
import pytest
import torch

from mtl_core.weighting.famo import FAMO


def test_slower_task_gets_more_weight():
    method = FAMO(["fast", "slow"])
    for step in range(40):
        losses = torch.tensor([0.9 ** step, 0.99 ** step])
        _, w = method.fuse(losses, step, [])
    z = torch.softmax(method.xi.detach(), 0)
    assert z[1] > 0.6 > 0.4 > z[0]


def test_first_step_weights_are_uniform_logits_and_effective_weights_are_the_derivative():
    method = FAMO(["a", "b"])
    losses = torch.tensor([0.5, 2.0], requires_grad=True)
    total, w = method.fuse(losses, 0, [])
    (grad,) = torch.autograd.grad(total, losses)
    assert torch.allclose(w, grad)
    assert w.sum().item() == pytest.approx(1.0)
    # with z uniform every log-loss gets the same push: w_t L_t = z_t / c, c = 0.5 (1/0.5 + 1/2)
    assert (w * losses.detach()).tolist() == pytest.approx([0.5 / 1.25, 0.5 / 1.25], rel=1e-6)


def test_no_update_before_two_steps_and_update_uses_consecutive_losses():
    method = FAMO(["a", "b"])
    method.fuse(torch.tensor([1.0, 1.0]), 0, [])
    assert torch.equal(method.xi.detach(), torch.zeros(2))
    method.fuse(torch.tensor([0.5, 1.0]), 1, [])  # task a fell: its logit goes down
    assert method.xi[0] < 0 < method.xi[1]
