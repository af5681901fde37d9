import torch

from mtl_core.weighting.grad_utils import lstsq_weights, project_simplex


def test_simplex_projection_of_known_points():
    torch.testing.assert_close(project_simplex(torch.tensor([0.2, 0.8], dtype=torch.float64)),
                               torch.tensor([0.2, 0.8], dtype=torch.float64))
    torch.testing.assert_close(project_simplex(torch.tensor([2.0, 0.0], dtype=torch.float64)),
                               torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(project_simplex(torch.tensor([0.5, 0.5, -1.0, 0.9], dtype=torch.float64)),
                               torch.tensor([0.2, 0.2, 0.0, 0.6], dtype=torch.float64))  # theta 0.3


def test_lstsq_weights_recover_an_exact_combination():
    torch.manual_seed(0)
    grads = torch.randn(3, 10)
    w = torch.tensor([0.5, -1.0, 2.0])
    torch.testing.assert_close(lstsq_weights(grads, w @ grads).float(), w, atol=1e-4, rtol=1e-4)


def test_lstsq_weights_of_dependent_gradients_are_the_smallest():
    grads = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(lstsq_weights(grads, torch.tensor([2.0, 0.0])).float(), torch.tensor([1.0, 1.0]))


def test_the_batched_simplex_projection_is_the_one_problem_one_bit_for_bit():
    import numpy as np

    from mtl_core.weighting.grad_utils import project_simplex_batch

    gen = np.random.default_rng(0)
    for t in (2, 3, 4):  # two tasks take a path of their own
        v = gen.standard_normal((500, t)) * 10.0 ** gen.integers(-3, 3, (500, 1))
        v[:5] = 0.5  # ties
        v[5, :2] = [1.5, -0.5]  # exactly on the edge where one weight becomes 0
        want = np.stack([project_simplex(torch.from_numpy(row)).numpy() for row in v])
        np.testing.assert_array_equal(project_simplex_batch(v), want)
