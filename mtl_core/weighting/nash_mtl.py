"""Nash-MTL: the Nash bargaining solution among tasks, ``G G^T alpha = 1 / alpha``, ``alpha > 0``.

Navon, A., Shamsian, A., Achituve, I., Maron, H., Kawaguchi, K., Chechik, G. and Fetaya, E.
"Multi-Task Learning as a Bargaining Game." ICML 2022.

The update is ``sum_t alpha_t g_t``, whose inner product with each ``g_t`` is ``1 / alpha_t``.
The paper solves for ``alpha`` with cvxpy through a sequence of convex approximations. Here:
``G G^T alpha = 1 / alpha`` is exactly the stationarity condition of the strictly convex
``F(alpha) = alpha^T M alpha / 2 - sum_t log alpha_t``, minimised by damped Newton steps that stay
inside ``alpha > 0`` (``F`` is self-concordant, so this converges from any start), warm-started
from the last solution. As the official code (github.com/AvivNavon/nash-mtl), the Gram is first
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
from mtl_core.weighting.grad_utils import combine_rows, gram, live_tasks


def solve_bargaining(m: np.ndarray, start: np.ndarray, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """``alpha > 0`` with ``m alpha = 1 / alpha`` for a positive definite ``m (T, T)``."""
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


@register_weighting("nash_mtl")
class NashMTL(GradWeighting):
    weights_note = "the Nash bargaining solution it computes is the same whatever each task's gradient is multiplied by"
    supports_params = True
    supports_rep = True
    defaults = {"update_weights_every": 1.0, "max_norm": 1.0}
    state_attrs = ("alpha", "_start")
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
        n = float(torch.linalg.matrix_norm(m))
        if n <= 0.0:  # every gradient is zero: no bargaining to do, nothing to weigh
            return torch.zeros(m.shape[0], dtype=torch.float64)
        live = live_tasks(m).numpy()  # tasks with a non-zero gradient: the others are not in the bargain
        mn = (m[live][:, live] / n).numpy() + 1e-6 * np.eye(live.size)
        a = solve_bargaining(mn, self._start.numpy()[live])
        start = self._start.clone()
        start[live] = torch.from_numpy(a)
        self._start = start
        alpha = np.zeros(m.shape[0])
        alpha[live] = a / np.sqrt(n)
        return torch.from_numpy(alpha)

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        if self.alpha is None or step % int(self.params["update_weights_every"]) == 0:
            self.alpha = self.solve(gram(grads))
        g, w = combine_rows(self.alpha, grads)  # (D,), (T,)
        max_norm = float(self.params["max_norm"])
        norm = float(g.norm())
        if max_norm > 0 and norm > max_norm:  # the official code clips the shared gradient
            g, w = g * (max_norm / norm), w * (max_norm / norm)
        return g, w
