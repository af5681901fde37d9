"""DualProj (TorchJD): the mean gradient projected onto the dual cone of the task gradients,
checked against projections worked out by hand in the plane."""
import torch

from mtl_core.weighting.dualproj import DualProj
from mtl_core.weighting.upgrad import UPGrad

# g1 = (1, 0), g2 = (-2, 1): the dual cone {d : g1.d >= 0, g2.d >= 0} = {x >= 0, y >= 2x}, the
# wedge between the rays (0, 1) and (1, 2)
GRADS = torch.tensor([[1.0, 0.0], [-2.0, 1.0]])


def test_the_mean_is_projected_onto_the_nearest_edge_of_the_dual_cone():
    # mean (-0.5, 0.5) has x < 0 (it hurts task 1). Onto the ray (0, 1): (0, 0.5), 0.5 away; onto
    # the ray (1, 2): (0.5 / 5) (1, 2) = (0.1, 0.2), 0.67 away. So d = (0, 0.5) = 1 g1 + 0.5 g2.
    g, w = DualProj(["a", "b"]).combine_grads(GRADS, torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([0.0, 0.5]), atol=1e-3, rtol=0)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5]), atol=2e-3, rtol=0)
    torch.testing.assert_close(w @ GRADS, g)
    # UPGrad averages the projections instead: g1 -> (0.2, 0.4), g2 -> (0, 1), mean (0.1, 0.7)
    g_up, _ = UPGrad(["a", "b"]).combine_grads(GRADS, torch.ones(2), 0)
    torch.testing.assert_close(g_up, torch.tensor([0.1, 0.7]), atol=1e-3, rtol=0)


def test_task_weights_are_the_preference_that_is_averaged():
    # weights 3 : 1 -> p = (0.75, 0.25), average (0.25, 0.25): g2.d = -0.25 < 0. Onto the ray
    # (1, 2): (0.75 / 5) (1, 2) = (0.15, 0.3), 0.11 away (the ray (0, 1) is 0.25 away);
    # (0.15, 0.3) = 0.75 g1 + 0.3 g2
    g, w = DualProj(["a", "b"], weights={"a": 3.0, "b": 1.0}).combine_grads(GRADS, torch.ones(2), 0)
    torch.testing.assert_close(g, torch.tensor([0.15, 0.3]), atol=1e-3, rtol=0)
    torch.testing.assert_close(w, torch.tensor([0.75, 0.3]), atol=2e-3, rtol=0)


def test_gradients_that_agree_with_their_mean_give_the_mean():
    grads = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.3, 0.1, 2.0]])  # pairwise non-negative
    g, w = DualProj(list("abc")).combine_grads(grads, torch.ones(3), 0)
    torch.testing.assert_close(g, grads.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(w, torch.full((3,), 1 / 3), atol=1e-4, rtol=0)
