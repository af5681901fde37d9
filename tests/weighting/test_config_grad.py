"""ConFIG (Liu, Chu, Thuerey, ICLR 2025): the direction U^+ 1 on the unit gradients, as long as the
sum of the gradients' projections on it; hand computations in the plane and TorchJD's formula."""
import math

import torch

from mtl_core.weighting.config_grad import ConFIG


def test_orthogonal_gradients_of_different_size():
    # units (1, 0), (0, 1): d = U^+ 1 = (1, 1), d_hat = (1, 1) / sqrt 2; length
    # g1.d_hat + g2.d_hat = 1 / sqrt 2 + 2 / sqrt 2 = 3 / sqrt 2; update 3/2 (1, 1) = 1.5 g1 + 0.75 g2
    g, w = ConFIG(["a", "b"]).combine_grads(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([1.5, 1.5]))
    torch.testing.assert_close(w, torch.tensor([1.5, 0.75]))


def test_conflicting_gradients_get_equal_positive_projections():
    # g1 = (1, 0), g2 = (-1, 1) (g1.g2 < 0). U d = 1: d_x = 1, (-d_x + d_y) / sqrt 2 = 1, so
    # d = (1, 1 + r) with r = sqrt 2, ||d||^2 = 4 + 2r. Length (g1 + g2).d / ||d|| = (1 + r) / ||d||,
    # update (1 + r) / (4 + 2r) d = d / (2r) = (0.354, 0.854) = (1 + r) / 2 g1 + (1 + r) / (2r) g2
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    g, w = ConFIG(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    r = math.sqrt(2)
    torch.testing.assert_close(g, torch.tensor([1 / (2 * r), (1 + r) / (2 * r)]))
    torch.testing.assert_close(w, torch.tensor([(1 + r) / 2, (1 + r) / (2 * r)]))
    units = grads / grads.norm(dim=1, keepdim=True)
    torch.testing.assert_close(units @ g, torch.full((2,), 1 / (2 * r)))  # the same for both tasks, > 0


def test_task_weights_are_the_preference_vector():
    # weights 2 : 1 on the orthogonal pair: d = U^+ (2, 1) = (2, 1), length (2 + 2) / sqrt 5,
    # update 4/5 (2, 1) = (1.6, 0.8) = 1.6 g1 + 0.4 g2
    method = ConFIG(["a", "b"], weights={"a": 2.0, "b": 1.0})
    g, w = method.combine_grads(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([1.6, 0.8]))
    torch.testing.assert_close(w, torch.tensor([1.6, 0.4]))


def torchjd_config(matrix: torch.Tensor) -> torch.Tensor:
    """TorchJD's ``ConFIG.forward`` (torchjd/aggregation/_config.py) with its default weights of 1."""
    units = torch.nan_to_num(matrix / matrix.norm(dim=1).unsqueeze(1), 0.0)
    best = torch.linalg.pinv(units) @ torch.ones(matrix.shape[0], dtype=matrix.dtype)
    unit_target = torch.nn.functional.normalize(best, dim=0)
    return (matrix @ unit_target).sum() * unit_target


def test_matches_torchjd_on_random_gradients():
    gen = torch.Generator().manual_seed(0)
    for t in (2, 3, 5):
        grads = torch.randn(t, 30, generator=gen, dtype=torch.float64) * torch.rand(t, 1, generator=gen, dtype=torch.float64)
        g, w = ConFIG(list("abcde")[:t]).combine_grads(grads.float(), torch.ones(t), 0)
        torch.testing.assert_close(g, torchjd_config(grads).float(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(w @ grads.float(), g, atol=1e-5, rtol=1e-4)
