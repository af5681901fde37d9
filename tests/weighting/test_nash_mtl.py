import torch

from mtl_core.weighting.grad_utils import gram
from mtl_core.weighting.nash_mtl import NashMTL


def test_alpha_solves_the_bargaining_equation():
    torch.manual_seed(0)
    grads = torch.randn(3, 8) * torch.tensor([[1.0], [3.0], [0.5]])
    method = NashMTL(list("abc"), params={"max_norm": 0.0})
    g, w = method.combine_grads(grads, torch.ones(3), 0)
    m = gram(grads)
    alpha = method.alpha
    assert (alpha > 0).all()
    torch.testing.assert_close(m @ alpha, 1 / alpha, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads @ g, 1 / w, atol=1e-3, rtol=1e-3)  # task t gets exactly 1/alpha_t


def test_orthogonal_gradients_get_inverse_norm_weights():
    g, w = NashMTL(["a", "b"], params={"max_norm": 0.0}).combine_grads(
        torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.ones(2), 0)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0]), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g, torch.tensor([1.0, 1.0]), atol=1e-4, rtol=1e-4)


def test_update_is_clipped_to_max_norm():
    g, w = NashMTL(["a", "b"]).combine_grads(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.ones(2), 0)
    assert abs(float(g.norm()) - 1.0) < 1e-5  # sqrt(2) before clipping
    torch.testing.assert_close(w @ torch.tensor([[2.0, 0.0], [0.0, 1.0]]), g)


def test_weights_are_reused_between_updates():
    method = NashMTL(["a", "b"], params={"update_weights_every": 2.0, "max_norm": 0.0})
    _, w0 = method.combine_grads(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.ones(2), 0)
    _, w1 = method.combine_grads(torch.tensor([[1.0, 0.0], [0.0, 4.0]]), torch.ones(2), 1)
    _, w2 = method.combine_grads(torch.tensor([[1.0, 0.0], [0.0, 4.0]]), torch.ones(2), 2)
    torch.testing.assert_close(w1, w0)
    torch.testing.assert_close(w2, torch.tensor([1.0, 0.25]), atol=1e-4, rtol=1e-4)
