"""IMTL-G: the combined gradient has the same projection on every task's unit gradient.

Liu, L., Li, Y., Kuang, Z., Xue, J.-H., Chen, Y., Yang, W., Liao, Q. and Zhang, W.
"Towards Impartial Multi-task Learning." ICLR 2021.

With ``u_t = g_t / ||g_t||``, ``D`` the rows ``g_1 - g_t`` and ``U`` the rows ``u_1 - u_t``
(t = 2..T), the paper's closed form is ``alpha_{2:T} = g_1 U^T (D U^T)^{-1}``, ``alpha_1 = 1 - sum
alpha_{2:T}`` and the update ``sum_t alpha_t g_t``: its projections ``g . u_t`` are all equal, so no
task is favoured, and the weights sum to 1. Only the gradient half of IMTL (IMTL-G); the loss-scale
half (IMTL-L) is a loss weighting of its own. Computed as ``pinv(M) n / (1' pinv(M) n)`` on the
float64 Gram matrix ``M`` (see :func:`imtl_g_weights`): the same answer where the paper's system
is regular, and one that does not depend on the tasks' order where it is singular. A task whose gradient is zero has
no direction ``u_t`` to be impartial to (the equal-projection condition would force the update to
zero): it is left out, with weight 0, and the others are balanced among themselves.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, exact_gram, solve_on_live


def imtl_g_weights(m: Tensor) -> Tensor:
    """IMTL-G's ``alpha (T,)`` from the Gram matrix ``m (T, T)``: ``pinv(M) n / (1' pinv(M) n)``.

    Equal projections ``g . u_t`` for the update ``g = G^T alpha`` are ``M alpha = lambda n`` (``n``
    the gradients' norms), so ``alpha`` is proportional to ``M^{-1} n`` and sums to 1: the paper's
    closed form whenever the gradients are linearly independent. Written this way it treats the
    tasks alike (the paper's form singles out task 1, and on linearly dependent gradients its
    least-squares answer depended on which task came first); the pseudo-inverse gives the
    minimum-norm answer there (g = [1, 1], [2, 2], [0.5, 0.5]: update [1.5, 1.5] in any order).
    Where ``n`` has no part in ``M``'s range (``g`` and ``-g``) no update has equal positive
    projections: the update is zero."""
    t = m.shape[0]
    if t == 1:
        return torch.ones(1, dtype=torch.float64)
    norms = m.diagonal().clamp_min(0.0).sqrt()  # (T,)
    # eigenvalues of M under 1e-12 of the largest are round-off (M is exact_gram's float64): the
    # singular values of G under 1e-6 of its largest
    c = torch.linalg.pinv(m, rtol=1e-12, hermitian=True) @ norms  # (T,)
    total = float(c.sum())
    if abs(total) <= 1e-12 * float(c.abs().sum()) or total == 0.0:
        return torch.zeros(t, dtype=torch.float64)
    return c / total  # (T,)


@register_weighting("imtl_g")
class IMTLG(GradWeighting):
    weights_note = ("its update's direction is, by construction, the same whatever each task's gradient is "
                    "multiplied by")
    supports_params = True
    supports_rep = True
    defaults: dict[str, float] = {}
    batched = True
    citation = "Liu et al., 'Towards Impartial Multi-task Learning', ICLR 2021 (IMTL-G)."

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(solve_on_live(exact_gram(grads), imtl_g_weights), grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: one batched pseudo-inverse; a problem with a zero gradient
        (solved on the other tasks) on its own."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T) in float64, as exact_gram
        norms = np.sqrt(np.maximum(m.diagonal(axis1=1, axis2=2), 0.0))  # (S, T)
        c = (np.linalg.pinv(m, rcond=1e-12, hermitian=True) @ norms[:, :, None])[:, :, 0]  # (S, T)
        total = c.sum(1, keepdims=True)
        flat = (np.abs(total) <= 1e-12 * np.abs(c).sum(1, keepdims=True)) | (total == 0)
        w = np.where(flat, 0.0, c / np.where(flat, 1.0, total)) if m.shape[1] > 1 else np.ones_like(c)
        for i in np.nonzero((norms <= 0).any(1))[0]:
            w[i] = solve_on_live(torch.from_numpy(m[i]), imtl_g_weights).numpy()
        return combine_rows_batch(w, g, grads)
