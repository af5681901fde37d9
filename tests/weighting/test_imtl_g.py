import torch

from mtl_core.weighting.imtl_g import IMTLG


def test_equal_projections_on_every_unit_gradient():
    torch.manual_seed(0)
    grads = torch.randn(4, 9) * torch.tensor([[1.0], [5.0], [0.2], [2.0]])  # very different sizes
    g, w = IMTLG(list("abcd")).combine_grads(grads, torch.ones(4), 0)
    projections = (grads / grads.norm(dim=1, keepdim=True)) @ g  # (T,)
    torch.testing.assert_close(projections, projections.mean().expand(4), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))  # weights sum to 1


def test_two_orthogonal_gradients_of_different_size():
    # g = a (1,0) + b (0,2) with a + b = 1 and g . (1,0) = g . (0,1): a = 2/3, b = 1/3
    g, w = IMTLG(["a", "b"]).combine_grads(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2), 0)
    torch.testing.assert_close(w, torch.tensor([2 / 3, 1 / 3]))
    torch.testing.assert_close(g, torch.tensor([2 / 3, 2 / 3]))
