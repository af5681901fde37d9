"""Contract tests for the loss-based methods (and DB-MTL and IMTL, gradient methods with state of
their own): on a tiny two-head model, ``combine`` leaves a finite gradient on every parameter and
finite weights for every task, and a run resumed from a ``weights_only`` checkpoint continues
exactly like an uninterrupted one."""
from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn

from mtl_core.weighting import db_mtl, dwa, famo, gls, gradnorm, imtl, imtl_l, rlw, stch, uw  # noqa: F401  (registers)
from mtl_core.weighting.base import WEIGHTINGS, StepContext

NAMES = ["uw", "dwa", "gradnorm", "rlw", "gls", "imtl_l", "famo", "db_mtl", "stch", "imtl"]
TASKS = ["a", "b"]
# short windows so a handful of steps goes past each method's warm-up
FAST = {"dwa": {"window": 2.0}, "stch": {"warmup": 2.0}}


class TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})

    def forward(self, x):
        h = self.shared(x)  # (B, 8)
        return {t: head(h).squeeze(1) for t, head in self.heads.items()}  # (B,) each


def batch(step: int):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 4, generator=g)  # (B, 4)
    return x, {"a": x.sum(1), "b": 10 * x[:, 0] - x[:, 1]}


def learnable(method) -> list[torch.nn.Parameter]:
    return [p for p in method.parameters() if p.requires_grad]


def make(name: str):
    torch.manual_seed(0)
    model = TwoHead()
    method = WEIGHTINGS.get(name)(TASKS, params=FAST.get(name)).to("cpu")
    # as the trainer: the method's parameters it does not step itself train with the model
    opt = torch.optim.Adam(list(model.parameters()) + learnable(method), lr=1e-2)
    return model, method, opt


def train(model, method, opt, steps: range) -> list[dict[str, float]]:
    out = []
    shared = list(model.shared.parameters())
    for step in steps:
        x, y = batch(step)
        pred = model(x)
        losses = {t: nn.functional.mse_loss(pred[t], y[t]) for t in TASKS}
        opt.zero_grad(set_to_none=True)
        out.append(method.combine(losses, shared, StepContext(step)))
        opt.step()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_combine_sets_finite_grads_and_weights(name):
    model, method, opt = make(name)
    shared = list(model.shared.parameters())
    for step in range(6):
        x, y = batch(step)
        pred = model(x)
        losses = {t: nn.functional.mse_loss(pred[t], y[t]) for t in TASKS}
        opt.zero_grad(set_to_none=True)
        weights = method.combine(losses, shared, StepContext(step))
        assert set(weights) == set(TASKS)
        assert all(math.isfinite(w) for w in weights.values())
        for p in list(model.parameters()) + learnable(method):
            assert p.grad is not None and torch.isfinite(p.grad).all()
        # every task's gradient reaches its own head
        assert all(model.heads[t].weight.grad.abs().sum() > 0 for t in TASKS)
        opt.step()


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_checkpoint_continues_the_same_run(name):
    model, method, opt = make(name)
    straight = train(model, method, opt, range(8))

    model, method, opt = make(name)
    train(model, method, opt, range(4))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "method": method.state_dict()}, buf)
    buf.seek(0)
    payload = torch.load(buf, weights_only=True)  # as the engine loads checkpoints
    model, method, opt = make(name)  # fresh objects: nothing carried over but the checkpoint
    model.load_state_dict(payload["model"])
    method.load_state_dict(payload["method"])
    opt.load_state_dict(payload["opt"])
    resumed = train(model, method, opt, range(4, 8))
    for a, b in zip(straight[4:], resumed, strict=True):
        assert a == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_each_method_cites_its_paper_and_has_float_defaults(name):
    cls = WEIGHTINGS.get(name)
    assert cls.citation and any(str(y) in cls.citation for y in range(2017, 2025))
    assert any(str(y) in (__import__(cls.__module__, fromlist=["_"]).__doc__ or "") for y in range(2017, 2025))
    assert all(isinstance(v, float) for v in cls.defaults.values())
    with pytest.raises(ValueError, match="no such parameter"):
        cls(TASKS, params={"not_a_param": 1.0})
