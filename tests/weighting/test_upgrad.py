import torch

from mtl_core.weighting.upgrad import UPGrad


def test_non_conflicting_gradients_give_the_mean():
    grads = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.3, 0.1, 2.0]])  # pairwise non-negative
    g, w = UPGrad(list("abc")).combine_grads(grads, torch.ones(3), 0)
    torch.testing.assert_close(g, grads.mean(0))


def test_conflicting_gradients_are_projected_onto_the_dual_cone():
    # dual cone of (1,0), (-1,1): {x >= 0, y >= x}; (1,0) projects to (.5,.5), (-1,1) to (0,1)
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    g, _ = UPGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([0.25, 0.75]), atol=1e-3, rtol=0)


def test_update_conflicts_with_no_task():
    grads = torch.tensor([[1.0, 0.0, 0.0, 0.3], [-2.0, 0.5, 0.0, 0.0], [0.2, 0.1, 1.0, -0.4]])
    assert (grads @ grads.mean(0)).min() < 0  # the plain mean hurts some task
    g, _ = UPGrad(list("abc")).combine_grads(grads, torch.ones(4), 0)
    assert (grads @ g).min() >= -1e-3 * float(g.norm()) * float(grads.norm(dim=1).max())
