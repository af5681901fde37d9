"""Nash-MTL: the Nash bargaining solution among tasks, ``G G^T alpha = 1 / alpha``, ``alpha > 0``.

Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K., Chechik, G. and Fetaya, E.
"Multi-Task Learning as a Bargaining Game." ICML 2022.

The update is ``sum_t alpha_t g_t``, whose inner product with each ``g_t`` is ``1 / alpha_t``.
The paper solves for ``alpha`` with cvxpy through a sequence of convex approximations. Here:
``G G^T alpha = 1 / alpha`` is exactly the stationarity condition of the strictly convex
``F(alpha) = alpha^T M alpha / 2 - sum_t log alpha_t``, minimised by damped Newton steps that stay
inside ``alpha > 0`` (``F`` is self-concordant, so this converges from any start), warm-started
from the last solution; for two tasks the solution has a closed form (the same to 1e-10, exact
where Newton's steps stop at round-off). As the official code (github.com/AvivNavon/nash-mtl), the Gram is first
divided by its Frobenius norm ``n``; unlike it, the solution is mapped back (``alpha / sqrt(n)``)
so the reported weights solve the paper's equation for the gradients given. Defaults are the
official ones: recompute every step (``update_weights_every`` 1, reusing the last ``alpha``
between), and clip the update to norm ``max_norm`` 1.0 (0 turns clipping off; with ``rep_grad``
the clip applies to the representation's gradient). Linearly
dependent gradients make the bargaining problem unbounded; a tiny ridge (1e-6 of the
normalised Gram) keeps ``alpha`` finite there. A task whose gradient is zero gets utility 0 from
any update, so its equation ``0 = 1 / alpha_t`` has no finite solution (the ridge held it at
``1e3 / sqrt(n)``, reported as a weight) while the others' equations do not involve it: it is
left out of the bargain, with ``alpha_t`` 0, which is that limit and leaves the others' ``alpha``
as they were (and a reused ``alpha`` never gives it a huge weight when its gradient returns).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import (
    as_numpy_batch,
    combine_rows,
    combine_rows_batch,
    gram,
    live_tasks,
    two_task_weights,
)


def solve_bargaining(m: np.ndarray, start: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """``alpha > 0`` with ``m alpha = 1 / alpha`` for a positive definite ``m (T, T)``: in closed form
    for two tasks (:func:`two_task_weights`), else by damped Newton steps from ``start``."""
    if m.shape[0] == 2:
        a, solved = two_task_weights(m[None])
        if solved[0]:
            return a[0]
    a = np.clip(start.astype(np.float64), 1e-6, None)

    def f(x: np.ndarray) -> float:
        return float(0.5 * x @ m @ x - np.log(x).sum())

    for _ in range(max_iter):
        grad = m @ a - 1.0 / a  # (T,) the equation's residual
        if np.linalg.norm(grad * a) < tol:  # relative: each term of grad is 1/alpha_t sized
            break
        step = -np.linalg.solve(m + np.diag(1.0 / a ** 2), grad)  # Newton direction
        neg = step < 0
        t = min(1.0, 0.99 * float(np.min(-a[neg] / step[neg]))) if neg.any() else 1.0  # stay > 0
        f0, slope = f(a), float(grad @ step)
        while t > 1e-12 and f(a + t * step) > f0 + 1e-4 * t * slope:  # Armijo backtracking
            t *= 0.5
        a = a + t * step
    return a


def solve_bargaining_batch(m: np.ndarray, start: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """:func:`solve_bargaining` for ``S`` positive definite ``m (S, T, T)`` from ``start (S, T)`` at once
    -> ``(alpha (S, T), converged (S,))``: the same damped Newton steps on the same strictly convex
    ``F``, so the same unique solution, but taken on to 1e-13 (the one-problem solver stops at 1e-10)
    or until round-off stops them improving; ``converged`` where the one-problem tolerance is met.
    Two tasks: the closed form, as there."""
    s, t = m.shape[0], m.shape[1]
    if t == 2:
        a, solved = two_task_weights(m)
        return np.where(solved[:, None], a, start), solved
    a = np.clip(start, 1e-6, None)
    eye = np.eye(t)

    def f(x: np.ndarray) -> np.ndarray:
        return 0.5 * (x * (m @ x[:, :, None])[:, :, 0]).sum(1) - np.log(x).sum(1)

    active = np.ones(s, dtype=bool)
    last = np.full(s, np.inf)
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            grad = (m @ a[:, :, None])[:, :, 0] - 1.0 / a  # (S, T)
            res = np.sqrt(((grad * a) ** 2).sum(1))  # (S,) as the one-problem solver measures it
            # done: solved to 1e-13, or within the one-problem tolerance and round-off stops the progress
            active &= ~((res < 1e-13) | ((res < 1e-10) & (res > 0.5 * last))) & np.isfinite(res)
            if not active.any():
                break
            last = res
            hess = m + eye * (1.0 / a ** 2)[:, :, None]
            hess[~active] = eye
            step = -np.linalg.solve(hess, np.where(active[:, None], grad, 0.0)[:, :, None])[:, :, 0]
            room = np.where(step < 0, -a / step, np.inf).min(1)
            tau = np.minimum(1.0, 0.99 * room)  # stay > 0
            f0, slope = f(a), (grad * step).sum(1)
            search = active & (-slope > 1e-10 * (1.0 + np.abs(f0)))  # else full steps: F's decrease is round-off
            while search.any():  # Armijo backtracking, on the rows that need it
                search &= (f(a + tau[:, None] * step) > f0 + 1e-4 * tau * slope) & (tau > 1e-12)
                tau = np.where(search, tau * 0.5, tau)
            a = np.where(active[:, None], a + tau[:, None] * step, a)
        grad = (m @ a[:, :, None])[:, :, 0] - 1.0 / a
        res = np.sqrt(((grad * a) ** 2).sum(1))
    return a, (res < 1e-10) & np.isfinite(a).all(1)


def bargain(m: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """``alpha (T,)`` solving ``m alpha = 1 / alpha`` for the Gram ``m (T, T)`` from the warm start
    ``start (T,)`` (on the normalised Gram), and the next warm start."""
    n = float(torch.linalg.matrix_norm(m))
    if n <= 0.0:  # every gradient is zero: no bargaining to do, nothing to weigh
        return torch.zeros(m.shape[0], dtype=torch.float64), start
    live = live_tasks(m).numpy()  # tasks with a non-zero gradient: the others are not in the bargain
    mn = (m[live][:, live] / n).numpy() + 1e-6 * np.eye(live.size)
    a = solve_bargaining(mn, start.numpy()[live])
    start = start.clone()
    start[live] = torch.from_numpy(a)
    alpha = np.zeros(m.shape[0])
    alpha[live] = a / np.sqrt(n)
    return torch.from_numpy(alpha), start


@register_weighting("nash_mtl")
class NashMTL(GradWeighting):
    weights_note = "the Nash bargaining solution it computes is the same whatever each task's gradient is multiplied by"
    supports_params = True
    supports_rep = True
    defaults = {"update_weights_every": 1.0, "max_norm": 1.0}
    state_attrs = ("alpha", "_start")
    batched = True
    citation = "Navon et al., 'Multi-Task Learning as a Bargaining Game', ICML 2022."

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        every = self.params["update_weights_every"]
        if every < 1 or every != int(every):
            raise ConfigError("weighting.params.update_weights_every",
                              f"{self.params['update_weights_every']} is not a whole number of steps; use 1 or more")
        if self.params["max_norm"] < 0:
            raise ConfigError("weighting.params.max_norm", "max_norm is negative; use 0 (no clipping) or more")
        self.alpha: Tensor | None = None  # (T,) the last solution, float64, solves the paper's equation
        # warm start, on the normalised Gram; a tensor, not numpy: checkpoints load with weights_only
        self._start = torch.ones(len(self.tasks), dtype=torch.float64)

    def solve(self, m: Tensor) -> Tensor:
        """``alpha (T,)`` solving ``m alpha = 1 / alpha`` for the Gram ``m (T, T)``; updates the warm start."""
        alpha, self._start = bargain(m, self._start)
        return alpha

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        if self.alpha is None or step % int(self.params["update_weights_every"]) == 0:
            self.alpha = self.solve(gram(grads))
        g, w = combine_rows(self.alpha, grads)  # (D,), (T,)
        max_norm = float(self.params["max_norm"])
        norm = float(g.norm())
        if max_norm > 0 and norm > max_norm:  # the official code clips the shared gradient
            g, w = g * (max_norm / norm), w * (max_norm / norm)
        return g, w

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems, each with its own last ``alpha`` and warm start (``_batch_alpha``,
        ``_batch_start``, ``(S, T)``, kept apart from the one-problem state). Every problem without a
        zero gradient is solved at once (:func:`solve_bargaining_batch`, below the one-problem
        tolerance: the same unique solution to that tolerance); one with a zero gradient, or that
        the batched steps did not solve, by :func:`bargain` on its own."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        s, t = m.shape[0], m.shape[1]
        start = getattr(self, "_batch_start", None)
        if start is None or start.shape != (s, t):
            start, self._batch_alpha = np.ones((s, t)), None
        if self._batch_alpha is None or step % int(self.params["update_weights_every"]) == 0:
            n = np.sqrt((m ** 2).sum((1, 2)))  # (S,) Frobenius norms
            live = (m.diagonal(axis1=1, axis2=2) > 0).all(1)  # (S,) no zero gradient
            mn = m / np.where(live, n, 1.0)[:, None, None] + 1e-6 * np.eye(t)
            a, ok = solve_bargaining_batch(np.where(live[:, None, None], mn, np.eye(t)), start)
            ok &= live
            alpha = np.where(ok[:, None], a / np.sqrt(np.where(ok, n, 1.0))[:, None], 0.0)
            start = np.where(ok[:, None], a, start)
            for i in np.nonzero(~ok)[0]:
                row, row_start = bargain(torch.from_numpy(m[i]), torch.from_numpy(start[i].copy()))
                alpha[i], start[i] = row.numpy(), row_start.numpy()
            self._batch_alpha = alpha
        self._batch_start = start
        w = np.where(g.any(axis=2), self._batch_alpha, 0.0)  # (S, T), as combine_rows
        d = np.einsum("st,std->sd", w, g)
        max_norm = float(self.params["max_norm"])
        norm = np.linalg.norm(d, axis=1)
        if max_norm > 0:  # the official code clips the shared gradient
            w = w * np.where(norm > max_norm, max_norm / np.where(norm > 0, norm, 1.0), 1.0)[:, None]
        return combine_rows_batch(w, g, grads)
