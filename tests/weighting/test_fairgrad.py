import torch

from mtl_core.weighting.fairgrad import FairGrad
from mtl_core.weighting.grad_utils import gram
from mtl_core.weighting.nash_mtl import NashMTL


def test_proportional_fairness_agrees_with_nash_mtl():
    torch.manual_seed(0)
    grads = torch.randn(2, 5) * torch.tensor([[1.0], [4.0]])
    _, w_fair = FairGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    _, w_nash = NashMTL(["a", "b"], params={"max_norm": 0.0}).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(w_fair / w_fair.sum(), w_nash / w_nash.sum(), atol=1e-4, rtol=1e-4)  # up to scale
    torch.testing.assert_close(w_fair, w_nash, atol=1e-3, rtol=1e-3)  # and here the scale matches too


def test_alpha_two_solves_its_equation():
    torch.manual_seed(1)
    grads = torch.randn(3, 6) * 0.01  # small gradients: the scaled solve still lands
    _, w = FairGrad(list("abc"), params={"alpha": 2.0}).combine_grads(grads, torch.ones(3), 0)
    m = gram(grads).float()
    torch.testing.assert_close(m @ w, w ** -0.5, atol=1e-3, rtol=1e-3)
