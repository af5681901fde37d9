"""IMTL-G: the combined gradient has the same projection on every task's unit gradient.

Liu, L., Li, Y., Kuang, Z., Xue, J.-H., Chen, Y., Yang, W., Liao, Q. and Zhang, W.
"Towards Impartial Multi-task Learning." ICLR 2021.

With ``u_t = g_t / ||g_t||``, ``D`` the rows ``g_1 - g_t`` and ``U`` the rows ``u_1 - u_t``
(t = 2..T), the closed form is ``alpha_{2:T} = g_1 U^T (D U^T)^{-1}``, ``alpha_1 = 1 - sum alpha_{2:T}``
and the update ``sum_t alpha_t g_t``: its projections ``g . u_t`` are all equal, so no task is
favoured, and the weights sum to 1. Only the gradient half of IMTL (IMTL-G); the loss-scale half
(IMTL-L) is a loss weighting of its own. Everything is computed from the Gram matrix; a singular
system (linearly dependent gradients) uses the pseudo-inverse. A task whose gradient is zero has
no direction ``u_t`` to be impartial to (the equal-projection condition would force the update to
zero): it is left out, with weight 0, and the others are balanced among themselves.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram, solve_on_live


def imtl_g_weights(m: Tensor) -> Tensor:
    """IMTL-G's ``alpha (T,)`` from the Gram matrix ``m (T, T)``."""
    t = m.shape[0]
    if t == 1:
        return torch.ones(1, dtype=torch.float64)
    norms = m.diagonal().clamp_min(0.0).sqrt().clamp_min(1e-12)  # (T,); a zero gradient has no direction
    p = m / norms  # p[i, j] = g_i . u_j
    # D U^T [a, b] = (g_1 - g_a) . (u_1 - u_b), rows and columns over t = 2..T
    du = (p[0, 0] - p[0, 1:])[None, :] - (p[1:, 0][:, None] - p[1:, 1:])  # (T-1, T-1)
    gu = p[0, 0] - p[0, 1:]  # (T-1,) g_1 U^T
    # tolerances on the gradients' scale: the Gram was accumulated in float32, so collinear
    # gradients leave round-off, not signal, in D U^T
    tol = 1e-6 * float(norms.max())
    rest = torch.linalg.pinv(du.T, atol=tol, rtol=1e-6) @ gu  # solves alpha D U^T = g_1 U^T
    return torch.cat([(1.0 - rest.sum())[None], rest])  # (T,)


@register_weighting("imtl_g")
class IMTLG(GradWeighting):
    weights_note = "its update is, by construction, the same whatever each task's gradient is multiplied by"
    supports_params = True
    supports_rep = True
    defaults: dict[str, float] = {}
    citation = "Liu et al., 'Towards Impartial Multi-task Learning', ICLR 2021 (IMTL-G)."

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(solve_on_live(gram(grads), imtl_g_weights), grads)
