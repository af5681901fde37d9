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
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, gram, zero_dead_rows
from mtl_core.weighting.min_norm import simplex_candidates

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


def cagrad_dual_batch(m: np.ndarray, c: float) -> np.ndarray:
    """:func:`cagrad_dual` for ``S`` Gram matrices ``m (S, T, T)``, ``T <= 3``, in closed form (numpy).

    The objective ``F(w) = w^T M b + r sqrt(w^T M w)`` (``r = c ||g0||``) is convex, so its minimum
    over the simplex is a stationary point of ``F`` on one of its faces, or the point where
    ``g_w = 0`` (the min-norm point, when 0 is in the gradients' hull). On an edge
    ``w = (1 - a) e_i + a e_j`` stationarity is a quadratic equation in ``a``; inside the triangle
    it is ``M (b + r v) = mu 1`` with ``v = w / ||g_w||``, so ``v = (mu M^-1 1 - b) / r`` and
    ``v^T M v = 1`` is a quadratic in ``mu``. Every root that lies in the simplex is a candidate,
    with the vertices and the min-norm point; ``F`` is evaluated at each and the least taken, so a
    spurious root (the equations are squared) can never win. Exact up to round-off, where
    SLSQP stops at its tolerance."""
    s, t = m.shape[0], m.shape[1]
    b = np.full(t, 1.0 / t)
    mb = m @ b  # (S, T)
    bmb = mb @ b  # (S,) ||g0||^2
    r = c * np.sqrt(np.maximum(bmb, 0.0) + 1e-12)  # (S,) sqrt(phi), as cagrad_dual
    cands = [simplex_candidates(m)]  # vertices, edges' min-norm points, the min-norm point
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(t):
            for j in range(i + 1, t):
                aa, ab, bb = m[:, i, i], m[:, i, j], m[:, j, j]
                big_a, big_b, big_c = aa, ab - aa, aa + bb - 2 * ab  # ||g(a)||^2 = A + 2 B a + C a^2
                q1 = mb[:, j] - mb[:, i]  # d/da of g(a) . g0
                k = q1 ** 2 - r ** 2 * big_c  # (q1^2 - r^2 C)(C a^2 + 2 B a) + q1^2 A - r^2 B^2 = 0
                qa, qb, qc = big_c * k, 2 * big_b * k, q1 ** 2 * big_a - r ** 2 * big_b ** 2
                disc = np.sqrt(np.maximum(qb ** 2 - 4 * qa * qc, 0.0))
                for root in ((-qb + disc) / (2 * qa), (-qb - disc) / (2 * qa)):
                    a = np.where((np.abs(qa) > 1e-300) & (root >= 0) & (root <= 1), root, np.nan)
                    w = np.zeros((s, 1, t))
                    w[:, 0, i], w[:, 0, j] = 1.0 - a, a
                    cands.append(w)
        if t == 3:
            size = np.maximum(np.abs(m).reshape(s, -1).max(1), 1e-300)
            regular = np.abs(np.linalg.det(m)) > 1e-12 * size ** 3
            inv1 = np.linalg.solve(np.where(regular[:, None, None], m, np.eye(t)), np.ones((s, t, 1)))[:, :, 0]
            alpha = inv1.sum(1)  # 1^T M^-1 1; alpha mu^2 - 2 mu + (b^T M b - r^2) = 0
            disc = np.sqrt(np.maximum(4 - 4 * alpha * (bmb - r ** 2), 0.0))
            for mu in ((2 + disc) / (2 * alpha), (2 - disc) / (2 * alpha)):
                v = (mu[:, None] * inv1 - b) / np.maximum(r, 1e-300)[:, None]
                w = v / v.sum(1, keepdims=True)
                ok = regular & (v.sum(1) > 0) & (w >= 0).all(1) & np.isfinite(w).all(1)
                cands.append(np.where(ok[:, None], w, np.nan)[:, None])
    w = np.concatenate(cands, axis=1)  # (S, K, T)
    quad = np.maximum(np.einsum("skt,stu,sku->sk", w, m, w), 0.0)
    cost = np.nan_to_num(np.einsum("skt,st->sk", w, mb) + r[:, None] * np.sqrt(quad + 1e-12), nan=np.inf)
    return w[np.arange(s), cost.argmin(1)]  # (S, T)


@register_weighting("cagrad")
class CAGrad(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"c": 0.5, "rescale": 1.0}
    batched = True
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

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems; the dual in closed form for up to three tasks
        (:func:`cagrad_dual_batch`), one problem at a time beyond."""
        s, t = grads.shape[0], grads.shape[1]
        if t > 3:
            out = [self.combine_grads(g, v, step) for g, v in zip(grads, losses)]
            return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
        c = float(self.params["c"])
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        b = np.full((s, t), 1.0 / t)
        if c == 0.0:
            return combine_rows_batch(b, g, grads)
        scale = m.diagonal(axis1=1, axis2=2).mean(1)  # (S,)
        dead = scale <= 0.0  # every gradient zero
        w = cagrad_dual_batch(m / np.where(dead, 1.0, scale)[:, None, None], c)  # (S, T)
        gw_norm = np.linalg.norm(np.einsum("st,std->sd", w, g), axis=1)  # from the gradients, as combine_grads
        g0_norm = np.linalg.norm(g.mean(1), axis=1)
        in_hull = gw_norm <= HULL_TOL * np.linalg.norm(g, axis=2).max(1)
        lam = np.where(in_hull, 0.0, c * g0_norm / np.maximum(gw_norm, 1e-300))
        weights = (b + lam[:, None] * w) / {0: 1.0, 1: 1.0 + c ** 2, 2: 1.0 + c}[int(self.params["rescale"])]
        weights = np.where((in_hull & (c >= 1.0))[:, None], 0.0, weights)  # 0 in the ball and the hull
        weights = np.where(dead[:, None], b, weights)
        return combine_rows_batch(weights, g, grads)
