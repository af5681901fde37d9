"""STCH (Lin et al. 2024): a smooth max of normalised log-losses; weights concentrate on the
task furthest behind its reference as mu -> 0."""
import math

import pytest
import torch

from mtl_core.weighting.stch import SmoothTchebycheff


def warmed(nadir, mu):
    method = SmoothTchebycheff(["a", "b"], params={"mu": mu, "warmup": 2.0})
    for step in range(2):  # the reference is the warm-up's mean loss
        total, w = method.fuse(torch.tensor(nadir) * (0.5 + step), step, [])
        assert w.tolist() == [1.0, 1.0]
    return method


def test_weights_are_softmax_of_normalised_log_losses():
    method = warmed([1.0, 1.0], mu=1.0)
    total, w = method.fuse(torch.tensor([2.0, 1.0]), 2, [])
    assert w.tolist() == pytest.approx([2 * 2 / 3, 2 * 1 / 3])  # T softmax([log 2, 0])
    assert total.item() == pytest.approx(2 * math.log(2 + 1))


def test_weights_concentrate_on_the_worst_normalised_task_as_mu_shrinks():
    # task a has the larger raw loss, but task b is further above its own reference
    losses = torch.tensor([150.0, 2.0])
    shares = [warmed([100.0, 1.0], mu).fuse(losses, 2, [])[1][1].item() / 2 for mu in (1.0, 0.1, 0.01)]
    assert shares[0] < shares[1] < shares[2]
    assert shares[2] > 0.999


def test_warmup_trains_on_log_losses():
    method = SmoothTchebycheff(["a", "b"])
    losses = torch.tensor([2.0, 5.0])
    total, _ = method.fuse(losses, 0, [])
    assert total.item() == pytest.approx(math.log(10.0))
