"""Contract tests for every gradient-combination method: on a tiny two-head model, in both
parameter and representation mode, the update reaches every parameter, the weights are finite,
the reported weights reproduce the update, and a saved state resumes the same run."""
import io

import pytest
import torch
from torch import nn

from mtl_core.models.base import SharedRep
from mtl_core.weighting import (  # noqa: F401
    aligned_mtl,
    cagrad,
    config_grad,
    dualproj,
    excess_mtl,
    fairgrad,
    graddrop,
    gradvac,
    imtl,
    imtl_g,
    mgda,
    moco,
    nash_mtl,
    pcgrad,
    upgrad,
)
from mtl_core.weighting.base import WEIGHTINGS, StepContext

METHODS = ["mgda", "pcgrad", "gradvac", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl", "graddrop", "moco", "upgrad",
           "fairgrad", "excess_mtl", "imtl", "config", "dualproj"]
# the update is exactly sum_t w_t g_t with the reported weights (GradDrop: least squares; MoCo: tracked gradients)
EXACT = [m for m in METHODS if m not in ("graddrop", "moco")]
TASKS = ["up", "down"]


def two_head_model() -> tuple[nn.Module, nn.ModuleDict]:
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})
    return shared, heads


def step_losses(shared, heads, rep_grad: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)  # (B, 4)
    target = x.sum(1, keepdim=True)  # (B, 1): the two tasks want opposite outputs, so they conflict
    feats = shared(x)  # (B, 8)
    rep = SharedRep(feats, TASKS) if rep_grad else None
    outs = {t: heads[t](rep.per_task[t] if rep_grad else feats) for t in TASKS}
    losses = {"up": ((outs["up"] - target) ** 2).mean(), "down": ((outs["down"] + 2 * target) ** 2).mean()}
    return losses, rep


def test_all_methods_are_registered():
    assert set(METHODS) <= set(WEIGHTINGS.available())
    for name in METHODS:
        cls = WEIGHTINGS.get(name)
        assert cls.kind == "gradient" and cls.citation and cls.supports_params and cls.supports_rep
        assert all(isinstance(v, float) for v in cls.defaults.values())


@pytest.mark.parametrize("rep_grad", [False, True], ids=["params", "rep"])
@pytest.mark.parametrize("name", METHODS)
def test_combine_sets_finite_grads_on_every_parameter(name, rep_grad):
    shared, heads = two_head_model()
    method = WEIGHTINGS.get(name)(TASKS, rep_grad=rep_grad)
    params = list(shared.parameters()) + list(heads.parameters())
    for step in range(3):
        for p in params:
            p.grad = None
        losses, rep = step_losses(shared, heads, rep_grad, seed=step)
        weights = method.combine(losses, list(shared.parameters()), StepContext(step, rep=rep))
        assert set(weights) == set(TASKS)
        assert all(torch.isfinite(torch.tensor(w)) for w in weights.values()), weights
        for p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all()
        assert any(p.grad.abs().sum() > 0 for p in shared.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_reported_weights_reproduce_the_update(name):
    torch.manual_seed(1)
    grads = torch.randn(3, 20)  # (T, D)
    losses = torch.tensor([1.0, 0.5, 2.0])
    g, w = WEIGHTINGS.get(name)(["a", "b", "c"]).combine_grads(grads, losses, 0)
    assert g.shape == (20,) and w.shape == (3,) and torch.isfinite(g).all() and torch.isfinite(w).all()
    if name in EXACT:
        torch.testing.assert_close(w @ grads, g, atol=1e-4, rtol=1e-4)
    elif name == "graddrop":  # least squares: the residual is orthogonal to every task gradient
        residual = g - w @ grads
        assert (grads @ residual).abs().max() < 1e-3 * g.norm() * grads.norm(dim=1).max()


@pytest.mark.parametrize("name", METHODS)
def test_degenerate_gradients_stay_finite(name):
    cases = [torch.zeros(2, 5), torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
             torch.tensor([[0.3, -0.2, 0.1]])]
    for grads in cases:
        method = WEIGHTINGS.get(name)([f"t{i}" for i in range(grads.shape[0])])
        g, w = method.combine_grads(grads, torch.ones(grads.shape[0]), 0)
        assert torch.isfinite(g).all() and torch.isfinite(w).all(), (grads, g, w)
        assert g.shape == grads.shape[1:]


@pytest.mark.parametrize("name", METHODS)
def test_saved_state_resumes_the_same_run(name):
    torch.manual_seed(2)
    stream = [torch.randn(3, 12) for _ in range(4)]  # (T, D) per step
    losses = torch.tensor([1.0, 2.0, 0.5])
    first = WEIGHTINGS.get(name)(["a", "b", "c"])
    for step in range(2):
        first.combine_grads(stream[step], losses, step)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = WEIGHTINGS.get(name)(["a", "b", "c"])
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    for step in (2, 3):
        g1, w1 = first.combine_grads(stream[step], losses, step)
        g2, w2 = resumed.combine_grads(stream[step], losses, step)
        torch.testing.assert_close(g1, g2)
        torch.testing.assert_close(w1, w2)


@pytest.mark.parametrize("name", METHODS)
def test_unknown_parameter_is_refused(name):
    from mtl_core.errors import ConfigError
    with pytest.raises(ConfigError):
        WEIGHTINGS.get(name)(TASKS, params={"no_such_knob": 1.0})
