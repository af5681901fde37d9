"""DualProj: project the mean gradient onto the dual cone of the task gradients.

Quinton, P. and Rey, V. "Jacobian Descent for Multi-Objective Optimization." arXiv:2406.16232, 2024
(TorchJD's ``DualProj`` aggregator; the projection is Eq. 11 of Lopez-Paz and Ranzato, "Gradient
Episodic Memory for Continual Learning", NeurIPS 2017).

The dual cone of the task gradients is the set of directions ``d`` with ``g_t . d >= 0`` for every
task. Where UPGrad projects every ``g_i`` and averages the projections, DualProj averages first
and projects once: ``d = pi(sum_i p_i g_i)``, the closest direction to the (preference-weighted)
mean that conflicts with no task. When no task conflicts with the mean, the update is the mean.
The projection ``pi(J^T p) = J^T v``, ``v = argmin v^T M v`` subject to ``v >= p``, is the QP UPGrad
solves (:func:`dual_cone_weights`), on the same trace-normalised, regularised Gram as TorchJD
(defaults ``norm_eps`` and ``reg_eps`` theirs). A person's task weights are its preference vector
``p`` (TorchJD's ``pref_vector``), normalised to sum to 1; uniform, the mean, by default.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram
from mtl_core.weighting.upgrad import dual_cone_batch, dual_cone_weights, dual_cone_weights_batch, regularised_gram


def dualproj_weights(m: Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4, pref: Tensor | None = None) -> Tensor:
    """DualProj's ``w (T,)`` (update ``sum_t w_t g_t``) from the Gram ``m (T, T)``; ``pref (T,)``
    sums to 1 (uniform by default)."""
    t = m.shape[0]
    p = torch.full((t,), 1.0 / t, dtype=torch.float64) if pref is None else pref.double()  # (T,)
    w = dual_cone_weights(regularised_gram(m, norm_eps, reg_eps), p.numpy())
    return torch.from_numpy(w.astype("float64"))


@register_weighting("dualproj")
class DualProj(GradWeighting):
    uses_weights = "preference"
    weights_note = "the weights are its preference vector: the weighted average that is projected (normalised to sum to 1)"
    supports_params = True
    supports_rep = True
    defaults = {"norm_eps": 1e-4, "reg_eps": 1e-4}
    batched = True
    citation = ("Quinton & Rey, 'Jacobian Descent for Multi-Objective Optimization', arXiv:2406.16232, 2024 "
                "(TorchJD's DualProj).")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        w = dualproj_weights(gram(grads), float(self.params["norm_eps"]), float(self.params["reg_eps"]),
                             self.preference())
        return combine_rows(w, grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems (:func:`dual_cone_batch`): each one's preference projected."""
        return dual_cone_batch(self, grads, losses, step,
                               lambda mn, p: dual_cone_weights_batch(mn, np.broadcast_to(p, mn.shape[:2])))
