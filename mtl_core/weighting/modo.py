"""MoDo: multi-objective gradient descent with double sampling.

Chen, L., Fernando, H., Ying, Y. and Chen, T. "Three-Way Trade-Off in Multi-Objective Learning:
Optimization, Generalization and Conflict-Avoidance." NeurIPS 2023.

Each step draws three independent batches, with per-task gradient matrices ``G1, G2, G3 (T, D)``:

    lambda <- Proj_simplex(lambda - gamma (G1 G2^T lambda + rho lambda))    (lambda_0 uniform)
    update  = G3^T lambda                                                 (the new lambda)

``G1 G2^T`` is an unbiased estimate of the Gram ``G G^T`` of the true gradients because the two
batches are independent (one batch's ``G G^T`` is biased by its noise), and the model moves along
a third batch, independent of ``lambda``. Defaults are LibMTL's (gamma 1e-3, rho 0.1), whose
``MoDo.py`` comes from the authors' code (github.com/heshandevaka/Trade-Off-MOL); as there, the
heads get the mean of their gradients over the three batches. The reported weights are
``lambda``, and the update is exactly ``sum_t lambda_t g3_t``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import MultiBatchWeighting, register_weighting
from mtl_core.weighting.grad_utils import (
    as_numpy_batch,
    combine_rows,
    combine_rows_batch,
    project_simplex,
    project_simplex_batch,
)


@register_weighting("modo")
class MoDo(MultiBatchWeighting):
    weights_note = "it chooses every weight itself, by a projected step on the tasks' gradients of two batches"
    batches_per_step = 3
    defaults = {"gamma": 1e-3, "rho": 0.1}
    state_attrs = ("lam",)
    batched = True
    citation = ("Chen, Fernando, Ying, Chen, 'Three-Way Trade-Off in Multi-Objective Learning: Optimization, "
                "Generalization and Conflict-Avoidance', NeurIPS 2023 (MoDo).")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        for name in ("gamma", "rho"):
            if self.params[name] < 0:
                raise ConfigError(f"weighting.params.{name}",
                                  f"{name}={self.params[name]} is negative; use {name} >= 0 "
                                  f"(the default is {self.defaults[name]})")
        n = len(self.tasks)
        self.lam = torch.full((n,), 1.0 / n, dtype=torch.float64)  # (T,) on the simplex

    def combine_multi(self, grads: list[Tensor], losses: list[Tensor], step: int) -> tuple[Tensor, Tensor]:
        g1, g2, g3 = grads
        m = (g1 @ g2.T).double().cpu()  # (T, T): (i, j) = <g1_i, g2_j>, unbiased for G G^T
        step_dir = m @ self.lam + self.params["rho"] * self.lam  # (T,)
        self.lam = project_simplex(self.lam - self.params["gamma"] * step_dir)  # (T,)
        return combine_rows(self.lam, g3)  # (D,), (T,)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """:meth:`combine_grads` (one batch in all three roles) on ``S`` problems, each with its own
        ``lambda`` (``_batch_lam (S, T)``, kept apart from the one-problem state): the same step."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        s, t = m.shape[0], m.shape[1]
        lam = getattr(self, "_batch_lam", None)
        if lam is None or lam.shape != (s, t):
            lam = np.broadcast_to(self.lam.numpy(), (s, t)).copy()  # the one-problem start: uniform
        step_dir = (m @ lam[:, :, None])[:, :, 0] + self.params["rho"] * lam
        self._batch_lam = project_simplex_batch(lam - self.params["gamma"] * step_dir)
        return combine_rows_batch(self._batch_lam, g, grads)
