"""DB-MTL (Lin et al. 2023): per-task gradient contributions end up with equal norm, and a
task's loss scale does not matter."""
import pytest
import torch
from torch import nn

from mtl_core.weighting.base import StepContext
from mtl_core.weighting.db_mtl import DBMTL


def test_contributions_have_equal_norm_for_very_different_gradient_scales():
    method = DBMTL(["big", "small"])
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        grads = torch.randn(2, 50, generator=g) * torch.tensor([[100.0], [0.01]])  # (T, D)
        _, alpha = method.combine_grads(grads, torch.ones(2), step)
    contributions = torch.linalg.vector_norm(alpha[:, None] * method.buffer, dim=1)  # (T,)
    assert contributions[0].item() == pytest.approx(contributions[1].item(), rel=1e-5)
    assert alpha[1] > 1000 * alpha[0]


def test_multiplying_a_loss_by_a_constant_changes_no_gradient():
    def grads_with(scale: float):
        torch.manual_seed(0)
        shared, head_a, head_b = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1)
        x = torch.randn(8, 3)  # (B, 3)
        h = torch.tanh(shared(x))  # (B, 4)
        losses = {"a": (head_a(h) ** 2).mean(), "b": scale * ((head_b(h) - 1) ** 2).mean()}
        DBMTL(["a", "b"]).combine(losses, list(shared.parameters()), StepContext(0))
        return [p.grad.clone() for m in (shared, head_a, head_b) for p in m.parameters()]

    for plain, scaled in zip(grads_with(1.0), grads_with(1000.0), strict=True):
        assert torch.allclose(plain, scaled, rtol=1e-4, atol=1e-7)


def test_refuses_the_shared_representation():
    with pytest.raises(ValueError, match="rep_grad"):
        DBMTL(["a", "b"], rep_grad=True)


def test_default_decay_is_libmtls_constant_beta():
    # LibMTL/config.py: --DB_beta 0.9, --DB_beta_sigma 0, so m <- g + 0.9 (m - g) at every step, from m = 0
    method = DBMTL(["a", "b"])
    g1, g2, g3 = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(0))  # (T, D) each
    for step, g in enumerate((g1, g2, g3)):
        method.combine_grads(g, torch.ones(2), step)
    m = torch.zeros(2, 6)
    for g in (g1, g2, g3):
        m = 0.1 * g + 0.9 * m
    torch.testing.assert_close(method.buffer, m)
