"""FairGrad: alpha-fair allocation of the update among tasks, ``G G^T w = w^(-1/alpha)``.

Ban, H. and Ji, K. "Fair Resource Allocation in Multi-Task Learning." ICML 2024.

The update ``d = sum_t w_t g_t`` gives task ``t`` the "utility" ``g_t . d = w_t^(-1/alpha)``, the
optimum of the alpha-fair utility sum: ``alpha`` 1 (default, as the official code,
github.com/OptMN-Lab/fairgrad) is proportional fairness, the same equation as Nash-MTL; larger
``alpha`` moves towards max-min fairness. Solved on the Gram divided by its Frobenius norm ``n``
(then ``w`` is mapped back by ``n^(-alpha/(1+alpha))``, which solves the unscaled equation
exactly), by Newton's method on the strictly convex potential whose stationarity condition the
equation is, to 1e-13 (:func:`newton_weights`); for two tasks at ``alpha`` 1 the solution has a
closed form (:func:`two_task_weights`). We differ from the official code here on
purpose: its scipy ``least_squares`` from ``w = 1/T`` hits its evaluation limit when the gradients'
norms are orders of magnitude apart and stops on its step tolerance when they are nearly opposite,
leaving the equation up to 0.4 off (an update of squared norm 0.0034 where the definition gives
T = 2, on CAGrad's toy from about step 70); where both solve the equation they agree. Next to the
Pareto set of CAGrad's toy (cosine -0.9999999) both closed form and Newton solve the equations to
round-off, with weights in the thousands, where ``least_squares`` left them 4% off. Where the equations have no
solution (0 in the gradients' cone) ``least_squares`` still runs, as the official code, and its
stopping point is the answer. A task with a zero
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
from mtl_core.weighting.grad_utils import (
    as_numpy_batch,
    combine_grads_rows,
    combine_rows,
    combine_rows_batch,
    gram,
    solve_on_live,
    two_task_weights,
)


def fairgrad_weights(m: Tensor, alpha: float) -> Tensor:
    """``w (T,)`` with ``m w = w^(-1/alpha)`` for the Gram ``m (T, T)``: :func:`fairgrad_weights_batch`
    on this one problem (a closed form or Newton's method) where the equations have a solution, the
    official code's ``least_squares`` where they have none (its stopping point is then the answer)."""
    t = m.shape[0]
    n = float(torch.linalg.matrix_norm(m))
    if n <= 0.0:  # every gradient is zero: nothing to allocate
        return torch.zeros(t, dtype=torch.float64)
    w, solved = fairgrad_weights_batch(m.double().numpy()[None], alpha)
    if solved[0]:
        return torch.from_numpy(w[0])
    a = (m / n).numpy()
    res = least_squares(lambda w: a @ w - np.power(1.0 / w, 1.0 / alpha), np.full(t, 1.0 / t),
                        bounds=(0.0, np.inf), xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return torch.from_numpy(res.x * n ** (-alpha / (1.0 + alpha)))


def fairgrad_weights_batch(m: np.ndarray, alpha: float, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fairgrad_weights` for ``S`` Gram matrices ``m (S, T, T)`` without a zero diagonal entry,
    at once (numpy) -> ``(w (S, T), converged (S,))``: in closed form for two tasks and ``alpha`` 1
    (:func:`two_task_weights`), else by Newton's method (:func:`newton_weights`)."""
    if m.shape[1] == 2 and alpha == 1.0:
        return two_task_weights(m)
    return newton_weights(m, alpha, max_iter)


def newton_weights(m: np.ndarray, alpha: float, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fairgrad_weights_batch` by Newton's method -> ``(w (S, T), converged (S,))``.

    ``m w = w^(-1/alpha)`` is the stationarity condition of the strictly convex
    ``F(w) = w^T a w / 2 + sum_t h(w_t)``, ``h'(w) = -w^(-1/alpha)`` (``h = -log w`` at ``alpha`` 1), on
    the Gram ``a`` divided by its Frobenius norm as in the one-problem form, so its solution, where
    there is one, is unique. Newton steps on ``F`` that stay in ``w > 0``, with Armijo backtracking
    while ``F``'s decrease is above its round-off, reach it from any start (here the solution for
    orthogonal gradients, ``a_tt w_t = w_t^(-1/alpha)``); they are run until every equation holds to
    1e-13 relative to the size of its terms (round-off's limit where nearly opposite gradients make
    them cancel; the one-problem ``least_squares`` stops at 1e-12), and ``w`` is mapped back as
    there. ``converged`` is false where the equations have no solution (0 in the gradients' cone: ``F``
    is unbounded below, and the one-problem solver's answer is wherever its tolerances stop it) or
    were not solved in ``max_iter`` steps."""
    s, t = m.shape[0], m.shape[1]
    p = 1.0 / alpha
    n = np.sqrt((m ** 2).sum((1, 2)))  # (S,) Frobenius norms
    a = m / n[:, None, None]
    eye = np.eye(t)

    def cost(x: np.ndarray) -> np.ndarray:
        h = -np.log(x) if p == 1.0 else -x ** (1.0 - p) / (1.0 - p)
        return 0.5 * (x * (a @ x[:, :, None])[:, :, 0]).sum(1) + h.sum(1)

    with np.errstate(all="ignore"):
        w = a.diagonal(axis1=1, axis2=2) ** (-1.0 / (1.0 + p))  # (S, T)
        active, failed = np.ones(s, dtype=bool), np.zeros(s, dtype=bool)
        for _ in range(max_iter):
            wp = w ** -p
            r = (a @ w[:, :, None])[:, :, 0] - wp  # (S, T) the equations' residuals
            rel = np.abs(r / (np.abs(a) @ w[:, :, None] + wp[:, :, None])[:, :, 0]).max(1)  # to its terms' size
            failed |= active & (~np.isfinite(rel) | (w.max(1) > 1e15))  # off towards F's unbounded side
            active &= (rel >= 1e-13) & ~failed
            if not active.any():
                break
            hess = a + eye * (p * wp / w)[:, :, None]
            singular = active & ~(np.abs(np.linalg.det(hess)) > 0)  # the same, to round-off
            failed |= singular
            active &= ~singular
            hess[~active] = eye
            step = -np.linalg.solve(hess, np.where(active[:, None], r, 0.0)[:, :, None])[:, :, 0]  # Newton
            room = np.where(step < 0, -w / step, np.inf).min(1)  # the largest step staying in w > 0
            tau = np.minimum(1.0, 0.99 * room)
            f0, slope = cost(w), (r * step).sum(1)
            search = active & (-slope > 1e-10 * (1.0 + np.abs(f0)))  # else full steps: F's decrease is round-off
            while search.any():  # Armijo backtracking, on the rows that need it
                search &= ~(cost(w + tau[:, None] * step) <= f0 + 1e-4 * tau * slope) & (tau > 1e-12)
                tau = np.where(search, tau * 0.5, tau)
            w = np.where(active[:, None], w + tau[:, None] * step, w)
        wp = w ** -p
        r = np.abs((a @ w[:, :, None])[:, :, 0] - wp)
        to_terms = (r / (np.abs(a) @ w[:, :, None] + wp[:, :, None])[:, :, 0]).max(1)
        to_sides = (r / wp).max(1)
    # solved to round-off: each equation to 1e-12 of the size of its terms, and to 1e-2 of its
    # right-hand side (nearly opposite gradients make the terms cancel, so their round-off is large
    # next to the right-hand side; where there is no solution an equation stays off by about its
    # right-hand side: then the one-problem solver's answer is the answer)
    converged = ~failed & (to_terms < 1e-12) & (to_sides < 1e-2) & np.isfinite(w).all(1)
    return w * n[:, None] ** (-alpha / (1.0 + alpha)), converged


@register_weighting("fairgrad")
class FairGrad(GradWeighting):
    weights_note = "it chooses the weights itself, those that give every task an α-fair share of the improvement"
    supports_params = True
    supports_rep = True
    defaults = {"alpha": 1.0}
    batched = True
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

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: the same Newton steps for every start at once
        (:func:`fairgrad_weights_batch`; each start's iterates are those it has alone). A problem with
        a zero gradient (solved on the other tasks), or whose equations have no solution, goes
        through :meth:`combine_grads` on its own."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        live = (m.diagonal(axis1=1, axis2=2) > 0).all(1)  # (S,) no zero gradient
        w, ok = fairgrad_weights_batch(np.where(live[:, None, None], m, np.eye(m.shape[1])),
                                       float(self.params["alpha"]))
        d, weights = combine_rows_batch(np.where(ok[:, None], w, 0.0), g, grads)
        return combine_grads_rows(self, grads, losses, step, np.nonzero(~(live & ok))[0], (d, weights))
