"""MGDA-UB: the min-norm point in the convex hull of the task gradients.

Sener, O. and Koltun, V. "Multi-Task Learning as Multi-Objective Optimization." NeurIPS 2018.

The combined gradient is ``sum_t w_t g_t`` with ``w`` on the simplex minimising its norm, a
common descent direction for every task (zero at a Pareto-stationary point). "UB" (upper bound)
is the paper's cheap variant on the shared representation: use ``rep_grad``. ``normalize`` picks
the official code's gradient normaliser ``n_t`` (``g_t / n_t`` enter the solver):
0 none (LibMTL's default), 1 the L2 norm, 2 the loss, 3 loss times L2 norm ("loss+").
The reported weights are on the raw gradients, ``w_t / n_t``. A task whose gradient is zero (a
batch without its labels) puts the zero vector in the hull, so the min-norm point is 0 and there
is no update, as the definition says; every weight is then reported as 0 (the simplex weight 1
sits on a zero vector, and with the loss normalisers it was ``1 / 1e-12``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, gram
from mtl_core.weighting.min_norm import min_norm_weights, min_norm_weights_batch

NORMALIZERS = ("none", "l2", "loss", "loss+")


@register_weighting("mgda")
class MGDA(GradWeighting):
    weights_note = "it chooses the weights itself: the min-norm combination of the task gradients"
    supports_params = True
    supports_rep = True
    defaults = {"normalize": 0.0}
    batched = True
    citation = ("Sener & Koltun, 'Multi-Task Learning as Multi-Objective Optimization', NeurIPS 2018 "
                "(MGDA-UB on the shared representation).")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        mode = self.params["normalize"]
        if mode not in range(len(NORMALIZERS)):
            raise ConfigError("weighting.params.normalize",
                              f"{mode} is not a normaliser; use 0 (none), 1 (l2), 2 (loss) or 3 (loss+)")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        norms = grads.norm(dim=1).double().cpu()  # (T,)
        loss = losses.double().cpu()  # (T,)
        mode = NORMALIZERS[int(self.params["normalize"])]
        n = {"none": torch.ones_like(norms), "l2": norms, "loss": loss, "loss+": loss * norms}[mode]
        n = n.clamp_min(1e-12)  # a zero gradient or loss must not divide by zero
        m = gram(grads) / torch.outer(n, n)  # Gram of g_t / n_t
        w = min_norm_weights(m) / n  # (T,) on the raw gradients
        return combine_rows(w, grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems; exact for up to three tasks (every face of the simplex
        compared, :func:`min_norm_weights_batch`), where the one-problem form runs Frank-Wolfe."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        norms = np.sqrt(np.maximum(m.diagonal(axis1=1, axis2=2), 0.0))  # (S, T)
        loss = losses.detach().double().cpu().numpy()
        mode = NORMALIZERS[int(self.params["normalize"])]
        n = {"none": np.ones_like(norms), "l2": norms, "loss": loss, "loss+": loss * norms}[mode]
        n = np.maximum(n, 1e-12)
        w = min_norm_weights_batch(m / (n[:, :, None] * n[:, None, :])) / n  # (S, T)
        return combine_rows_batch(w, g, grads)
