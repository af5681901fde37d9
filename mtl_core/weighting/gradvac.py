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

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, gram
from mtl_core.weighting.pcgrad import other_tasks_in_order


@register_weighting("gradvac")
class GradVac(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"beta": 0.5, "seed": 0.0}
    state_attrs = ("generator", "targets")
    batched = True
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

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems, each with its own targets (``_batch_targets (S, T, T)``, kept apart
        from the one-problem state): the orders drawn as ``S`` calls in a row draw them, the
        corrections and target updates done for every problem at once, pair by pair in those orders."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        s, t = m.shape[0], m.shape[1]
        beta = float(self.params["beta"])
        targets = getattr(self, "_batch_targets", None)
        if targets is None or targets.shape != (s, t, t):
            targets = np.broadcast_to(self.targets.numpy(), (s, t, t)).copy()
        orders = np.array([[other_tasks_in_order(t, i, self.generator) for i in range(t)] for _ in range(s)],
                          dtype=np.int64).reshape(s, t, t - 1)  # (S, T, T - 1)
        rows = np.arange(s)
        c = np.tile(np.eye(t), (s, 1, 1))  # (S, T, T)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(t):
                for k in range(t - 1):
                    j = orders[:, i, k]  # (S,)
                    ci = c[:, i]  # (S, T)
                    norm_i = np.sqrt(np.maximum(np.einsum("st,stu,su->s", ci, m, ci), 0.0))  # ||g_i^vac||
                    norm_j = np.sqrt(np.maximum(m[rows, j, j], 0.0))
                    live = (norm_i != 0.0) & (norm_j != 0.0)  # a zero gradient has no direction to align
                    phi = np.clip((ci * m[rows, :, j]).sum(1) / (norm_i * norm_j), -1.0, 1.0)
                    target = np.minimum(targets[rows, i, j], 0.999)
                    num = target * np.sqrt(1 - phi ** 2) - phi * np.sqrt(1 - target ** 2)
                    fix = live & (phi < target)
                    c[rows, i, j] += np.where(fix, norm_i * num / (norm_j * np.sqrt(1 - target ** 2)), 0.0)
                    targets[rows, i, j] = np.where(live, (1 - beta) * targets[rows, i, j] + beta * phi,
                                                   targets[rows, i, j])
        self._batch_targets = targets
        return combine_rows_batch(c.sum(1), g, grads)
