"""IMTL-L (Liu et al. 2021): at the optimum of the scales, every scaled loss equals 1."""
import pytest
import torch

from mtl_core.weighting.imtl_l import IMTLL


def test_optimised_scales_make_weighted_losses_equal():
    method = IMTLL(list("abc"))
    losses = torch.tensor([0.01, 1.0, 100.0])  # four orders of magnitude apart
    opt = torch.optim.Adam(method.parameters(), lr=0.1)
    for step in range(600):
        opt.zero_grad()
        total, _ = method.fuse(losses, step, [])
        total.backward()
        opt.step()
    _, w = method.fuse(losses, 0, [])
    assert (w * losses).tolist() == pytest.approx([1.0, 1.0, 1.0], rel=1e-2)


def test_weights_are_exp_of_scales():
    method = IMTLL(["a", "b"])
    method.scale.data = torch.tensor([0.0, 1.0])
    total, w = method.fuse(torch.tensor([2.0, 3.0]), 0, [])
    assert torch.allclose(w, torch.tensor([1.0, torch.e]))
    assert total.item() == pytest.approx(2.0 + 3.0 * torch.e - 1.0)
