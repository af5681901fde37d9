"""PCGrad: project each task gradient onto the normal plane of the gradients it conflicts with.

Yu, T., Kumar, S., Gupta, A., Levine, S., Hausman, K. and Finn, C. "Gradient Surgery for
Multi-Task Learning." NeurIPS 2020.

For each task ``i`` and every other task ``j`` in a random order: if ``g_i^pc . g_j < 0``,
``g_i^pc -= (g_i^pc . g_j) / ||g_j||^2 g_j``; the update is ``sum_i g_i^pc``. The random order
comes from the method's own generator, seeded by ``seed``, so a run is reproducible and resumes
where it stopped. The projections are done on coefficients over the Gram matrix
(``g_i^pc = sum_j C_ij g_j``), which gives the exact effective weights ``sum_i C_ij``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, gram


def other_tasks_in_order(t: int, i: int, generator: torch.Generator) -> list[int]:
    """Every task but ``i``, in a random order drawn from ``generator``."""
    return [j for j in torch.randperm(t, generator=generator).tolist() if j != i]


@register_weighting("pcgrad")
class PCGrad(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"seed": 0.0}
    state_attrs = ("generator",)
    batched = True
    citation = "Yu et al., 'Gradient Surgery for Multi-Task Learning', NeurIPS 2020."

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        self.generator = torch.Generator().manual_seed(int(self.params["seed"]))

    def coefficients(self, m: Tensor) -> Tensor:
        """``C (T, T)`` with ``g_i^pc = sum_j C_ij g_j``, given the Gram matrix ``m (T, T)``."""
        t = m.shape[0]
        c = torch.eye(t, dtype=torch.float64)  # (T, T)
        for i in range(t):
            for j in other_tasks_in_order(t, i, self.generator):
                dot = float(c[i] @ m[:, j])  # g_i^pc . g_j
                if dot < 0 and m[j, j] > 0:
                    c[i, j] -= dot / float(m[j, j])
        return c

    def project(self, grads: Tensor) -> Tensor:
        """The projected task gradients ``(T, D)`` (draws from the generator)."""
        return self.coefficients(gram(grads)).to(grads) @ grads  # (T, D)

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(self.coefficients(gram(grads)).sum(0), grads)


    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: the orders drawn as ``S`` calls in a row draw them, the
        projections done for every problem at once."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        s, t = m.shape[0], m.shape[1]
        # other_tasks_in_order for every start and task, in that order: the same draws
        perms = torch.stack([torch.randperm(t, generator=self.generator) for _ in range(s * t)]).numpy()
        perms = perms.reshape(s, t, t)
        orders = perms[perms != np.arange(t)[None, :, None]].reshape(s, t, t - 1)  # (S, T, T - 1)
        rows = np.arange(s)
        c = np.tile(np.eye(t), (s, 1, 1))  # (S, T, T)
        for i in range(t):
            for k in range(t - 1):
                j = orders[:, i, k]  # (S,)
                dot = (c[:, i] * m[rows, :, j]).sum(1)  # g_i^pc . g_j
                mjj = m[rows, j, j]
                c[rows, i, j] -= np.where((dot < 0) & (mjj > 0), dot / np.maximum(mjj, 1e-300), 0.0)
        return combine_rows_batch(c.sum(1), g, grads)
