import pytest
import torch

from mtl_core.weighting.grad_utils import gram
from mtl_core.weighting.gradvac import GradVac
from mtl_core.weighting.pcgrad import PCGrad


def cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_first_step_is_pcgrad():
    grads = torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.3]])  # conflicting; all targets start at 0
    g, w = GradVac(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    g_pc, w_pc = PCGrad(["a", "b"]).combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, g_pc)
    torch.testing.assert_close(w, w_pc)


def test_gradient_is_raised_exactly_to_the_target_similarity():
    method = GradVac(["a", "b"], params={"beta": 0.5})
    method.load_state_dict({"targets": torch.tensor([[0.0, 0.5], [0.5, 0.0]])})
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.1, 1.0])  # cosine ~0.0995, below the 0.5 target
    phi = cosine(g1, g2)
    c = method.coefficients(gram(torch.stack([g1, g2])))
    adjusted = c.float() @ torch.stack([g1, g2])  # (T, D)
    assert cosine(adjusted[0], g2) == pytest.approx(0.5, abs=1e-5)
    assert cosine(adjusted[1], g1) == pytest.approx(0.5, abs=1e-5)
    # the targets move towards the observed cosine by beta
    assert float(method.targets[0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * phi, abs=1e-6)


def test_gradients_above_their_target_are_left_alone():
    method = GradVac(["a", "b"])
    method.load_state_dict({"targets": torch.full((2, 2), 0.1)})
    grads = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cosine 0.71 > 0.1
    g, w = method.combine_grads(grads, torch.ones(2), 0)
    torch.testing.assert_close(g, grads.sum(0))
