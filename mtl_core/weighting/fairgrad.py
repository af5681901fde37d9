"""FairGrad: alpha-fair allocation of the update among tasks, ``G G^T w = w^(-1/alpha)``.

Ban, H. and Ji, K. "Fair Resource Allocation in Multi-Task Learning." ICML 2024.

The update ``d = sum_t w_t g_t`` gives task ``t`` the "utility" ``g_t . d = w_t^(-1/alpha)``, the
optimum of the alpha-fair utility sum: ``alpha`` 1 (default, as the official code,
github.com/OptMN-Lab/fairgrad) is proportional fairness, the same equation as Nash-MTL; larger
``alpha`` moves towards max-min fairness. Solved as the official code with scipy's
``least_squares`` on ``w >= 0`` from ``w = 1/T``, but on the Gram divided by its Frobenius norm
``n`` (then ``w`` is mapped back by ``n^(-alpha/(1+alpha))``, which solves the unscaled equation
exactly), so the start is on the right scale whatever the gradients' size. A task with a zero
gradient has utility 0 whatever ``d`` is, so its equation ``0 = w_t^(-1/alpha)`` sends ``w_t`` to
infinity while leaving the others' equations alone: it is left out of the allocation and reported
with weight 0, which is that limit (the solver used to stop at a weight in the thousands).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram, solve_on_live


def fairgrad_weights(m: Tensor, alpha: float) -> Tensor:
    """``w (T,)`` with ``m w = w^(-1/alpha)`` for the Gram ``m (T, T)``."""
    t = m.shape[0]
    n = float(torch.linalg.matrix_norm(m))
    if n <= 0.0:  # every gradient is zero: nothing to allocate
        return torch.zeros(t, dtype=torch.float64)
    a = (m / n).numpy()
    res = least_squares(lambda w: a @ w - np.power(1.0 / w, 1.0 / alpha), np.full(t, 1.0 / t),
                        bounds=(0.0, np.inf), xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return torch.from_numpy(res.x * n ** (-alpha / (1.0 + alpha)))


@register_weighting("fairgrad")
class FairGrad(GradWeighting):
    weights_note = "it chooses the weights itself, those that give every task an α-fair share of the improvement"
    supports_params = True
    supports_rep = True
    defaults = {"alpha": 1.0}
    citation = "Ban & Ji, 'Fair Resource Allocation in Multi-Task Learning', ICML 2024 (FairGrad)."

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        if self.params["alpha"] <= 0:
            raise ConfigError("weighting.params.alpha",
                              f"alpha={self.params['alpha']} must be positive (1 is proportional fairness)")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        alpha = float(self.params["alpha"])
        return combine_rows(solve_on_live(gram(grads), lambda m: fairgrad_weights(m, alpha)), grads)
