"""RLW (Lin et al. 2022): random positive weights summing to one, reproducible by seed."""
import pytest
import torch

from mtl_core.weighting.rlw import RandomLossWeighting


def draws(seed: float, n: int = 20):
    method = RandomLossWeighting(list("abc"), params={"seed": seed})
    return torch.stack([method.fuse(torch.ones(3), i, [])[1] for i in range(n)])  # (n, T)


def test_weights_positive_sum_to_one_and_vary():
    w = draws(0.0)
    assert (w > 0).all()
    assert w.sum(1).tolist() == pytest.approx([1.0] * 20)  # floats, not a tensor, for pytest.approx
    assert w.std(0).min() > 0.05  # they change from step to step
    assert w.argmax(1).unique().numel() == 3  # every task is sometimes the heaviest


def test_same_seed_same_sequence_other_seed_other_sequence():
    torch.manual_seed(123)
    a = draws(7.0)
    torch.manual_seed(456)  # the global random state does not matter
    assert torch.equal(a, draws(7.0))
    assert not torch.allclose(a, draws(8.0))


def test_total_is_the_weighted_sum():
    method = RandomLossWeighting(["a", "b"])
    losses = torch.tensor([1.0, 3.0])
    total, w = method.fuse(losses, 0, [])
    assert total.item() == pytest.approx((w * losses).sum().item())
