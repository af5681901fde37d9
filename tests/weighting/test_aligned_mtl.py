import torch

from mtl_core.weighting.aligned_mtl import AlignedMTL, alignment_matrix
from mtl_core.weighting.grad_utils import gram


def test_aligned_gradients_are_orthogonal_with_the_smallest_singular_value():
    torch.manual_seed(0)
    grads = torch.randn(3, 10) + 2.0  # strongly correlated, badly conditioned
    b = alignment_matrix(gram(grads)).float()
    aligned = b @ grads  # (T, D)
    sigma_min = torch.linalg.svdvals(grads).min()
    torch.testing.assert_close(aligned @ aligned.T, sigma_min ** 2 * torch.eye(3), atol=1e-3, rtol=1e-3)
    g, w = AlignedMTL(list("abc")).combine_grads(grads, torch.ones(3), 0)
    torch.testing.assert_close(g, aligned.sum(0), atol=1e-4, rtol=1e-4)


def test_orthogonal_gradients_are_scaled_to_the_smallest():
    g, w = AlignedMTL(["a", "b"]).combine_grads(torch.tensor([[1.0, 0.0], [0.0, 3.0]]), torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(w, torch.tensor([1.0, 1 / 3]))
