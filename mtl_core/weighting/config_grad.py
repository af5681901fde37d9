"""ConFIG: the direction with the same cosine to every task gradient, as long as their projections.

Liu, Q., Chu, M. and Thuerey, N. "ConFIG: Towards Conflict-free Training of Physics Informed
Neural Networks." ICLR 2025.

The paper's Eq. 2: with ``U`` the rows ``u_t = g_t / ||g_t||``, the direction is
``d = U^+ 1`` normalised, ``d_hat = d / ||d||``, and the update ``(sum_t g_t . d_hat) d_hat``.
``U d = 1`` says ``d`` has the same positive projection on every unit gradient, so it conflicts
with none of them (when the gradients are linearly independent); its length is the sum of the
gradients' projections on it. As TorchJD's ``ConFIG`` aggregator (adapted from the official code),
a person's task weights are its preference vector: ``d = U^+ p`` with ``p`` their weights, all
equal by default (only ``p``'s direction matters, so normalising it to sum to 1 changes nothing).
Not implemented: the paper's momentum variant (M-ConFIG), which updates one task's gradient per step.

Computed from the Gram matrix: ``U^+ p = U^T c`` with ``c = (U U^T)^+ p`` and
``U U^T = M / (n n^T)``, so the update is ``sum_t w_t g_t`` with ``w_t = L c_t / (||d|| n_t)``,
``L = sum_t g_t . d_hat`` and ``||d||^2 = c^T U U^T c``. The Gram is accumulated in float64 and
the pseudo-inverse drops the singular values of ``U`` under ``rtol`` times the largest (the
eigenvalues of ``U U^T`` under ``rtol^2``), as a pseudo-inverse of ``U`` itself would: nearly
collinear gradients keep their small but real singular values (with a preference vector they set
the direction), and exactly collinear or opposite ones give the least-squares ``d`` (opposite ones
give no update). A cut on the Gram's eigenvalues at ``rtol`` dropped singular values under 1e-3,
and with them the preference: [[1, 0, 0], [1, 3e-3, 0], [1, 0, 3e-3]] with weights (1, 2, 3) gave
projections of opposite sign instead of 1 : 2 : 3. A task whose
gradient is zero has no direction: it is left out (weight 0), which is what ``U^+`` does with a zero
row of ``U``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import (
    as_numpy_batch,
    combine_grads_rows,
    combine_rows,
    combine_rows_batch,
    exact_gram,
    live_tasks,
    solve_on_live,
)


def config_weights(m: Tensor, pref: Tensor | None = None, rtol: float = 1e-6) -> Tensor:
    """ConFIG's ``w (T,)`` (update ``sum_t w_t g_t``) from the float64 Gram ``m (T, T)`` of non-zero
    gradients; ``pref (T,)`` is the target projection on every unit gradient (ones by default);
    ``rtol``: the singular values of the unit gradients kept, relative to the largest."""
    t = m.shape[0]
    p = torch.ones(t, dtype=torch.float64) if pref is None else pref.double()  # (T,)
    norms = m.diagonal().clamp_min(0.0).sqrt()  # (T,)
    uu = m / (norms[:, None] * norms[None, :])  # (T, T) Gram of the unit gradients
    c = torch.linalg.pinv(uu, rtol=rtol * rtol, hermitian=True) @ p  # (T,) d = sum_t c_t u_t
    d_norm = max(float(c @ uu @ c), 0.0) ** 0.5  # round-off may leave ||d||^2 a hair below 0
    if d_norm <= 1e-12:  # p has no component the unit gradients can reach (e.g. g and -g)
        return torch.zeros(t, dtype=torch.float64)
    length = float((m / norms[None, :] @ c).sum()) / d_norm  # sum_i g_i . d_hat
    return length * c / (d_norm * norms)  # (T,)


@register_weighting("config")
class ConFIG(GradWeighting):
    uses_weights = "preference"
    weights_note = "the weights are its preference vector: the relative projections its direction has on the unit gradients"
    supports_params = True
    supports_rep = True
    defaults = {"rtol": 1e-6}
    batched = True
    citation = ("Liu, Chu, Thuerey, 'ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks', "
                "ICLR 2025.")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        m, pref = exact_gram(grads), self.preference()  # (T, T), (T,)
        live = live_tasks(m)
        w = solve_on_live(m, lambda sub: config_weights(sub, pref[live], float(self.params["rtol"])))
        return combine_rows(w, grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: one batched pseudo-inverse (the same cut); a problem with a zero
        gradient (solved on the other tasks) on its own."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T) in float64, as exact_gram
        rtol = float(self.params["rtol"])
        pref = self.preference().numpy()  # (T,)
        norms = np.sqrt(np.maximum(m.diagonal(axis1=1, axis2=2), 0.0))  # (S, T)
        live = (norms > 0).all(1)  # (S,)
        safe = np.where(live[:, None], norms, 1.0)
        uu = m / (safe[:, :, None] * safe[:, None, :])  # (S, T, T) Gram of the unit gradients
        c = np.linalg.pinv(uu, rcond=rtol * rtol, hermitian=True) @ pref  # (S, T)
        d_norm = np.sqrt(np.maximum(np.einsum("st,stu,su->s", c, uu, c), 0.0))  # (S,)
        reach = d_norm > 1e-12  # p has a component the unit gradients can reach
        d_safe = np.where(reach, d_norm, 1.0)
        length = ((m / safe[:, None, :]) @ c[:, :, None])[:, :, 0].sum(1) / d_safe  # sum_i g_i . d_hat
        w = np.where(reach[:, None], length[:, None] * c / (d_safe[:, None] * safe), 0.0)
        out = combine_rows_batch(w, g, grads)
        return combine_grads_rows(self, grads, losses, step, np.nonzero(~live)[0], out)
