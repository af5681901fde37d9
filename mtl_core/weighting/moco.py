"""MoCo: MGDA-like weights on tracked (bias-corrected) task gradients.

Fernando, H. D., Shen, H., Liu, M., Chaudhury, S., Murugesan, K. and Chen, T. "Mitigating
Gradient Bias in Multi-objective Learning: A Provably Convergent Approach." ICLR 2023.

Each step ``k`` (counted by the method from 1):

    y_t    <- y_t - beta_k (y_t - h_t)                                   (tracking, y_0 = 0)
    lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda)      (lambda_0 uniform)
    update  = sum_t lambda_t y_t

with ``beta_k = beta / k^beta_sigma`` and ``gamma_k = gamma / k^gamma_sigma``. ``h_t`` is the task
gradient, normalised as in the authors' code shared through LibMTL (``normalize`` 1:
``g_t / ||g_t|| * L_t``; 0 uses ``g_t`` as is). Defaults are LibMTL's (beta 0.5, beta_sigma 0.5,
gamma 0.1, gamma_sigma 0.5, rho 0). The ``lambda`` step is the paper's projected step; LibMTL
uses a softmax there instead. The paper's projection of ``y_t`` onto a bounded set is left out
(no bound is known here). The update combines the tracked ``y_t``, not this step's gradients,
so the reported weights are ``lambda`` (on the simplex), except that a tracked ``y_t`` that is
exactly zero (no gradient yet: so far every batch lacked the task's labels) is reported with
weight 0, as it added nothing. A task that had gradients before keeps a decaying, non-zero ``y_t``
that still enters the update, so its ``lambda_t`` is meaningful and reported as it is. If the
gradient size changes (a smaller last batch with ``rep_grad``), the tracking restarts from 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import project_simplex, zero_dead_rows


@register_weighting("moco")
class MoCo(GradWeighting):
    weights_note = "it combines its own running estimates of the task gradients and chooses every weight itself"
    supports_params = True
    supports_rep = True
    defaults = {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0, "normalize": 1.0}
    state_attrs = ("k", "lam")
    citation = ("Fernando et al., 'Mitigating Gradient Bias in Multi-objective Learning: A Provably "
                "Convergent Approach', ICLR 2023 (MoCo).")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        n = len(self.tasks)
        self.k = 0  # steps taken, for the step-size decay
        self.register_buffer("y", None)  # (T, D) tracked gradients, on the gradients' device
        self.lam = torch.full((n,), 1.0 / n, dtype=torch.float64)  # (T,) on the simplex

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        p = self.params
        self.k += 1
        h = grads
        if p["normalize"]:
            h = grads / (grads.norm(dim=1, keepdim=True) + 1e-8) * losses.to(grads)[:, None]  # (T, D)
        if self.y is None or self.y.shape != h.shape:
            self.y = torch.zeros_like(h)
        self.y = self.y.to(h)
        beta_k = p["beta"] / self.k ** p["beta_sigma"]
        gamma_k = p["gamma"] / self.k ** p["gamma_sigma"]
        self.y = self.y - beta_k * (self.y - h)  # (T, D)
        yy = (self.y @ self.y.T).double().cpu()  # (T, T)
        reg = yy + p["rho"] * torch.eye(yy.shape[0], dtype=torch.float64)
        self.lam = project_simplex(self.lam - gamma_k * reg @ self.lam)  # (T,)
        lam = self.lam.to(device=grads.device, dtype=grads.dtype)
        return lam @ self.y, zero_dead_rows(lam, self.y)  # (D,), (T,)
