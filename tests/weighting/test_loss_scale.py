"""fp16 training multiplies what is back-propagated by GradScaler's loss scale. Every method must
weigh the true losses (several take logs or ratios of them) and leave gradients exactly ``scale``
times the true ones, which the scaler divides back: the same run, scaled or not."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import mtl_core.weighting  # noqa: F401  (registers every method)
from mtl_core.models.base import SharedRep
from mtl_core.weighting.base import WEIGHTINGS, StepContext

TASKS = ["a", "b", "c"]
SCALE = 1024.0


def model():
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})
    return shared, heads


def losses_at(shared, heads, step: int, rep_grad: bool):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 4, generator=g)  # (B, 4)
    target = x.sum(1, keepdim=True)  # (B, 1)
    feats = shared(x)
    rep = SharedRep(feats, TASKS) if rep_grad else None
    out = {t: heads[t](rep.per_task[t] if rep_grad else feats) for t in TASKS}
    # losses of different sizes: 'c' is a hundred times 'a'
    return {"a": ((out["a"] - target) ** 2).mean(), "b": ((out["b"] + 2 * target) ** 2).mean(),
            "c": 100 * ((out["c"] - 0.5 * target) ** 2).mean()}, rep


def run(name: str, rep_grad: bool, scale: float, steps: int = 4):
    """Weights and gradients (divided by ``scale``, as GradScaler.unscale_ does) of each step."""
    shared, heads = model()
    method = WEIGHTINGS.get(name)(TASKS, rep_grad=rep_grad)
    params = list(shared.parameters()) + list(heads.parameters()) + list(method.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    out = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        losses, rep = losses_at(shared, heads, step, rep_grad)
        weights = method.combine(losses, list(shared.parameters()), StepContext(step, loss_scale=scale, rep=rep))
        for p in params:
            if p.grad is not None:
                p.grad /= scale
        out.append((weights, [None if p.grad is None else p.grad.clone() for p in params]))
        opt.step()
    return out


CASES = [(n, False) for n in WEIGHTINGS.available() if WEIGHTINGS.get(n).supports_params] + \
        [(n, True) for n in WEIGHTINGS.available() if WEIGHTINGS.get(n).supports_rep]


@pytest.mark.parametrize(("name", "rep_grad"), CASES, ids=[f"{n}-{'rep' if r else 'params'}" for n, r in CASES])
def test_a_loss_scale_changes_neither_the_weights_nor_the_unscaled_update(name, rep_grad):
    plain, scaled = run(name, rep_grad, 1.0), run(name, rep_grad, SCALE)
    for step, ((w1, g1), (w2, g2)) in enumerate(zip(plain, scaled, strict=True)):
        assert w2 == pytest.approx(w1, rel=1e-4, abs=1e-6), f"step {step}: weights moved with the loss scale"
        for a, b in zip(g1, g2, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=f"step {step}: gradient off")
