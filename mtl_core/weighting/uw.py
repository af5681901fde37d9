"""Uncertainty weighting (UW): Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics", CVPR 2018.

Each task gets a learnable log-variance ``s_t = log sigma_t^2`` and the total is the paper's
Eq. 7, ``sum_t L_t / (2 sigma_t^2) + log sigma_t``, written in ``s_t``:

    sum_t 0.5 exp(-s_t) L_t + 0.5 s_t

so a noisy task, whose loss cannot go low, earns a large ``s_t`` and a small effective weight
``0.5 exp(-s_t)`` (the weight reported). For a fixed loss the optimum is ``s_t* = log L_t``
(``sigma_t^2 = L_t``). Why this form: it is the paper's objective exactly, and the same as
LibMTL's ``weighting/UW.py`` (``losses / (2 exp(s)) + s / 2``). The form used here before,
``exp(-s_t) L_t + s_t``, is twice Eq. 7: the same optimum ``s_t*``, but every task weight, and
so the gradient on the model, doubled. Eq. 7 is the paper's regression (Gaussian) form; it is
applied to every task, as LibMTL does (the paper's Eq. 10 drops the 1/2 on a classification loss).
The ``s_t`` are optimised by the engine's optimiser together with the model (a learnable
``nn.Parameter`` of the module); they start at ``init_log_var`` (0, weight 0.5; LibMTL starts at -0.5).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("uw")
class UncertaintyWeighting(LossWeighting):
    weights_note = "it learns each task's weight from the noise of its loss, so a multiplier on a loss would be undone by its learnt log-variance"
    citation = ("Kendall, Gal, Cipolla (2018). Multi-Task Learning Using Uncertainty to Weigh Losses "
                "for Scene Geometry and Semantics. CVPR.")
    defaults = {"init_log_var": 0.0}

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.log_var = nn.Parameter(torch.full((len(self.tasks),), float(self.params["init_log_var"])))  # (T,)

    batched = True

    def fuse(self, losses, step, shared_params):
        return self.fuse_batch(losses, step)  # one problem: (T,) losses and log-variances

    def fuse_batch(self, losses, step):
        """``losses (..., T)`` and the log-variances, ``(T,)`` or a row per problem (:meth:`per_problem`)."""
        s = self.log_var.to(losses.dtype)  # (..., T)
        weights = 0.5 * torch.exp(-s)  # 1 / (2 sigma^2)
        total = (weights * losses + 0.5 * s).sum(-1)  # Eq. 7: L / (2 sigma^2) + log sigma
        return total, weights.detach()
