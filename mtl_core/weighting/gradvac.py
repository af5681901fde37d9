"""GradVac (Gradient Vaccine): raise each pair's gradient cosine to an adaptive target.

Wang, Z., Tsvetkov, Y., Firat, O. and Cao, Y. "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models." ICLR 2021.

For each task ``i`` and every other task ``j`` in a random order, with ``phi`` the cosine of
``g_i^vac`` and ``g_j`` and ``phi_hat`` its target: if ``phi < phi_hat``,

    g_i^vac += ||g_i^vac|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
               / (||g_j|| sqrt(1 - phi_hat^2)) g_j

which sets the cosine to exactly ``phi_hat``; then ``phi_hat <- (1 - beta) phi_hat + beta phi``
for every pair visited (as torchjd does; LibMTL moves it only after a correction). The update
is ``sum_i g_i^vac``. With every target
0 (the first step) this is PCGrad. This is the whole-vector version (one target per task pair,
LibMTL's ``group_type 0``), not the paper's per-layer one: the method sees one flat gradient.
``beta`` 0.5 is LibMTL's default; a smaller ``beta`` makes the targets slower and smoother.
Like PCGrad it works on coefficients over the Gram matrix, which gives exact effective weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram
from mtl_core.weighting.pcgrad import other_tasks_in_order


@register_weighting("gradvac")
class GradVac(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"beta": 0.5, "seed": 0.0}
    state_attrs = ("generator", "targets")
    citation = ("Wang et al., 'Gradient Vaccine: Investigating and Improving Multi-task Optimization "
                "in Massively Multilingual Models', ICLR 2021.")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        self.generator = torch.Generator().manual_seed(int(self.params["seed"]))
        n = len(self.tasks)
        self.targets = torch.zeros(n, n, dtype=torch.float64)  # phi_hat[i, j], EMA of cosines

    def coefficients(self, m: Tensor) -> Tensor:
        """``C (T, T)`` with ``g_i^vac = sum_j C_ij g_j``, given the Gram matrix ``m (T, T)``;
        updates the targets."""
        beta = float(self.params["beta"])
        t = m.shape[0]
        c = torch.eye(t, dtype=torch.float64)  # (T, T)
        for i in range(t):
            for j in other_tasks_in_order(t, i, self.generator):
                norm_i = math.sqrt(max(float(c[i] @ m @ c[i]), 0.0))  # ||g_i^vac||
                norm_j = math.sqrt(max(float(m[j, j]), 0.0))
                if norm_i == 0.0 or norm_j == 0.0:  # a zero gradient has no direction to align
                    continue
                phi = min(1.0, max(-1.0, float(c[i] @ m[:, j]) / (norm_i * norm_j)))
                # a target of exactly 1 would need an infinite step (identical gradients so far)
                target = min(float(self.targets[i, j]), 0.999)
                if phi < target:
                    num = target * math.sqrt(1 - phi ** 2) - phi * math.sqrt(1 - target ** 2)
                    c[i, j] += norm_i * num / (norm_j * math.sqrt(1 - target ** 2))
                self.targets[i, j] = (1 - beta) * float(self.targets[i, j]) + beta * phi
        return c

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(self.coefficients(gram(grads)).sum(0), grads)
