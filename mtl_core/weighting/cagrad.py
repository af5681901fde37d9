"""CAGrad: the update in a ball around the mean gradient that best helps the worst-off task.

Liu, B., Liu, X., Jin, X., Stone, P. and Liu, Q. "Conflict-Averse Gradient Descent for
Multi-task Learning." NeurIPS 2021.

    max_d min_i <g_i, d>   subject to   ||d - g0|| <= c ||g0||,   g0 = mean_t g_t

solved through its dual over the simplex, ``min_w g_w^T g0 + sqrt(phi) ||g_w||`` with
``g_w = sum_t w_t g_t`` and ``phi = c^2 ||g0||^2`` (scipy's SLSQP, as the official code,
github.com/Cranial-XIX/CAGrad); then ``d = g0 + sqrt(phi) / ||g_w|| g_w``. ``rescale`` as the
official code: 0 none, 1 divide by ``1 + c^2`` (default), 2 divide by ``1 + c``. With ``c = 0``
the update is exactly the mean gradient. The dual is solved on the Gram matrix scaled to unit
mean diagonal, which leaves its minimiser unchanged but keeps SLSQP's tolerances meaningful
when gradients are tiny. A task whose gradient is zero stays in ``g0`` (the mean over all ``T``)
and in the ``min``; the dual then often puts all its weight on it (``g_w = 0``), which made
``lam`` and that task's reported weight huge (1e11) although it multiplies a zero vector; it is
reported as 0 (``combine_rows``), the update is unchanged.

At a Pareto-stationary point (0 in the convex hull of the gradients) with ``c >= 1`` the ball
holds 0 and no update helps every task: the dual's minimum is ``g_w = 0`` and the update is zero.
``lam = sqrt(phi) / ||g_w||`` had no guard there (the official code adds 1e-4 to the norm), and
SLSQP's leftover ``g_w`` of norm ~1e-5, read off the Gram where its square cancels to round-off,
gave weights of 1e4 and updates of norm up to 2e7. ``||g_w||`` is now computed from the gradients
themselves, so ``||d|| <= (1 + c) ||g0||`` always, and ``g_w`` within :data:`HULL_TOL` of 0 is 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram, zero_dead_rows

# ||g_w|| under this fraction of the largest task gradient is the dual's minimum at g_w = 0 (to
# SLSQP's precision): 0 is in the gradients' convex hull
HULL_TOL = 1e-6


def cagrad_dual(m: np.ndarray, c: float) -> np.ndarray:
    """Simplex weights ``w (T,)`` minimising ``g_w^T g0 + c ||g0|| ||g_w||`` given the Gram ``m``."""
    t = m.shape[0]
    b = np.full(t, 1.0 / t)
    radius = c * np.sqrt(max(b @ m @ b, 0.0) + 1e-12)  # sqrt(phi) = c ||g0||

    def objective(w: np.ndarray) -> float:
        return float(w @ m @ b + radius * np.sqrt(max(w @ m @ w, 0.0) + 1e-12))

    res = minimize(objective, b.copy(), bounds=[(0.0, 1.0)] * t,
                   constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum()},), method="SLSQP",
                   options={"ftol": 1e-12, "maxiter": 500})  # the official code's defaults stop at 1e-6
    return np.clip(res.x, 0.0, None)


@register_weighting("cagrad")
class CAGrad(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"c": 0.5, "rescale": 1.0}
    citation = "Liu et al., 'Conflict-Averse Gradient Descent for Multi-task Learning', NeurIPS 2021."

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        if self.params["c"] < 0:
            raise ConfigError("weighting.params.c",
                              f"c={self.params['c']} is negative; use c >= 0 (the paper uses 0.5)")
        if self.params["rescale"] not in (0, 1, 2):
            raise ConfigError("weighting.params.rescale",
                              f"{self.params['rescale']} is not a rescale mode; "
                              "use 0 (none), 1 (1/(1+c^2)) or 2 (1/(1+c))")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        t = grads.shape[0]
        c = float(self.params["c"])
        if c == 0.0:  # the ball is the single point g0
            w = torch.full((t,), 1.0 / t, dtype=grads.dtype, device=grads.device)  # (T,)
            return grads.mean(0), zero_dead_rows(w, grads)
        m = gram(grads)  # (T, T)
        scale = float(m.diagonal().mean())
        if scale <= 0.0:  # every gradient is zero
            return combine_rows(torch.full((t,), 1.0 / t, dtype=torch.float64), grads)
        m = (m / scale).numpy()
        w = cagrad_dual(m, c)  # (T,)
        b = np.full(t, 1.0 / t)
        g64 = grads.double()
        gw = torch.from_numpy(w).to(g64) @ g64  # (D,) g_w from the gradients: its norm from the Gram
        gw_norm, g0_norm = float(gw.norm()), float(g64.mean(0).norm())  # cancels to round-off near 0
        if gw_norm <= HULL_TOL * float(g64.norm(dim=1).max()):  # the dual's minimum is at g_w = 0
            if c >= 1.0:  # 0 is in the ball and in the gradients' hull: the optimum is the zero update
                return combine_rows(torch.zeros(t, dtype=torch.float64), grads)
            lam = 0.0  # c < 1: a zero task gradient is in the min; the update stays g0 (see above)
        else:
            lam = c * g0_norm / gw_norm  # sqrt(phi) / ||g_w||
        weights = b + lam * w  # d = g0 + lam g_w, of norm at most (1 + c) ||g0||
        weights = weights / {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[int(self.params["rescale"])]
        return combine_rows(torch.from_numpy(weights), grads)
