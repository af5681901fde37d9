"""Random loss weighting (RLW): Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random
Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022.

Every step draws ``w = softmax(z)``, ``z ~ N(0, I)``: positive weights summing to 1. The draws
come from a generator the method owns, seeded by ``seed``, so a run (and a resumed run) sees the
same sequence of weights whatever else uses the global random state.
"""
from __future__ import annotations

import torch

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("rlw")
class RandomLossWeighting(LossWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    citation = ("Lin, Ye, Zhang, Tsang (2022). Reasonable Effectiveness of Random Weighting: "
                "A Litmus Test for Multi-Task Learning. TMLR.")
    defaults = {"seed": 0.0}
    state_attrs = ("generator",)
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.generator = torch.Generator().manual_seed(int(self.params["seed"]))  # CPU: same draws on any device

    def fuse(self, losses, step, shared_params):
        z = torch.randn(len(self.tasks), generator=self.generator)  # (T,)
        w = torch.softmax(z, dim=0).to(device=losses.device, dtype=losses.dtype)  # (T,)
        return (w * losses).sum(), w


    def fuse_batch(self, losses, step):
        # S draws in a row from the one generator, as S calls would make them
        z = torch.stack([torch.randn(len(self.tasks), generator=self.generator) for _ in range(losses.shape[0])])
        w = torch.softmax(z, dim=1).to(device=losses.device, dtype=losses.dtype)  # (S, T)
        return (w * losses).sum(1), w
