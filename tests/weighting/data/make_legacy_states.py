"""Writes ``legacy_states.pt``: every method's ``state_dict()`` in the format before methods were
``nn.Module``s (one flat dict a method wrote by hand), after the ``STEPS`` steps of
``test_state_contract.trained`` (same model, seeds, batches and task weights). It ran once on the
code of commit 7120f8c, the last with that format:

    git archive 7120f8c mtl_core | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/weighting/data/make_legacy_states.py

Kept so the test can check that a checkpoint of a run started before still resumes exactly."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import mtl_core.weighting  # noqa: F401  (registers every method)
from mtl_core.models.base import SharedRep
from mtl_core.weighting.base import WEIGHTINGS

TASKS = ["a", "b", "c"]
USER_WEIGHTS = {"a": 1.0, "b": 2.0, "c": 0.5}
# short windows: five steps fill DWA's two windows and STCH's warm-up
FAST = {"dwa": {"window": 2.0}, "stch": {"warmup": 2.0}}
STEPS = 5


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.heads = nn.ModuleDict({t: nn.Linear(6, 1) for t in TASKS})


def batch_losses(model: Tiny, seed: int, rep_grad: bool = False):
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))  # (B, 4)
    feats = model.shared(x)  # (B, 6)
    rep = SharedRep(feats, TASKS) if rep_grad else None
    out = {t: model.heads[t](rep.per_task[t] if rep_grad else feats) for t in TASKS}  # (B, 1) each
    return {"a": ((out["a"] - x.sum(1, keepdim=True)) ** 2).mean(), "b": ((out["b"] + 2 * x[:, :1]) ** 2).mean(),
            "c": 3 * ((out["c"] - x[:, 1:2]) ** 2).mean()}, rep


def main() -> None:
    states = {}
    for name in WEIGHTINGS.available():
        torch.manual_seed(0)
        model = Tiny()
        method = WEIGHTINGS.get(name)(TASKS, params=FAST.get(name))
        method.set_user_weights(USER_WEIGHTS)
        shared = list(model.shared.parameters())
        opt = torch.optim.SGD(list(model.parameters()) + list(method.parameters()), lr=0.05)
        k = method.batches_per_step
        for step in range(STEPS):
            opt.zero_grad(set_to_none=True)
            if k == 1:
                method.combine(batch_losses(model, step)[0], shared, step)
            else:
                method.combine_batches((batch_losses(model, step * k + j)[0] for j in range(k)), shared, step)
            opt.step()
        states[name] = method.state_dict()
    torch.save(states, Path(__file__).with_name("legacy_states.pt"))


if __name__ == "__main__":
    main()
