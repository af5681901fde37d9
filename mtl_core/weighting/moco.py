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

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import project_simplex, project_simplex_batch, zero_dead_rows


@register_weighting("moco")
class MoCo(GradWeighting):
    weights_note = "it combines its own running estimates of the task gradients and chooses every weight itself"
    supports_params = True
    supports_rep = True
    defaults = {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0, "normalize": 1.0}
    state_attrs = ("k", "lam")
    batched = True
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

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems, each with its own tracked gradients and ``lambda`` (``_batch_y
        (S, T, D)``, ``_batch_lam (S, T)``; the step count ``_batch_k`` is theirs in common, as they
        step together), kept apart from the one-problem state: the same arithmetic, in numpy."""
        p = self.params
        g = grads.detach().double().cpu().numpy()  # (S, T, D)
        s, t = g.shape[0], g.shape[1]
        y = getattr(self, "_batch_y", None)
        if y is None or y.shape != g.shape:
            y, self._batch_k = np.zeros_like(g), self.k
            self._batch_lam = np.broadcast_to(self.lam.numpy(), (s, t)).copy()  # the one-problem start
        self._batch_k += 1
        h = g
        if p["normalize"]:
            h = g / (np.linalg.norm(g, axis=2, keepdims=True) + 1e-8) * losses.detach().double().cpu().numpy()[:, :, None]
        beta_k = p["beta"] / self._batch_k ** p["beta_sigma"]
        gamma_k = p["gamma"] / self._batch_k ** p["gamma_sigma"]
        y = y - beta_k * (y - h)
        reg = y @ y.transpose(0, 2, 1) + p["rho"] * np.eye(t)  # (S, T, T)
        lam = project_simplex_batch(self._batch_lam - gamma_k * (reg @ self._batch_lam[:, :, None])[:, :, 0])
        self._batch_y, self._batch_lam = y, lam
        d = np.einsum("st,std->sd", lam, y)
        w = np.where(y.any(axis=2), lam, 0.0)  # a tracked y_t still zero added nothing
        return (torch.from_numpy(d).to(device=grads.device, dtype=grads.dtype),
                torch.from_numpy(w).to(device=grads.device, dtype=grads.dtype))
