"""ExcessMTL: task weights that grow with each task's estimated excess risk (distance to convergence).

He, Y., Zhou, S., Zhang, G., Yun, H., Xu, Y., Zeng, B., Chilimbi, T. and Zhao, H. "Robust
Multi-Task Learning with Excess Risks." ICML 2024.

Weighting by the loss itself (as GroupDRO does) favours a noisy task, whose loss cannot go low;
ExcessMTL weighs by the excess risk ``L_t(theta) - L_t(theta_t*)`` instead, estimated by a second
order Taylor expansion, ``~ g_t^T H_t^{-1} g_t`` (up to 1/2), with the diagonal Adagrad
approximation ``H_t = diag(sqrt(sum of g_t^2 over the steps so far + eps))``. As the official code
(github.com/yifei-he/ExcessMTL, also in LibMTL), each task's estimate is divided by its value at
the first step (so tasks of different loss scales compare), the weights take an exponentiated
gradient step ``alpha_t <- alpha_t exp(robust_step_size e_t / e_t^0)`` and are normalised to sum to
``T`` (the paper's simplex, times ``T``: the first update is the plain sum, as EW). The first
step only records ``e_t^0``; the update is ``sum_t alpha_t g_t``. Default step 1e-2 is the official
code's (its README's example uses 1).

A task whose gradient is zero (a batch without its labels) has excess estimate 0 this step: its
``alpha_t`` is not raised while the others' are. Where the official code would divide by a zero
first estimate, a task's ``e_t^0`` is the first non-zero one it has. On the shared representation
the gradients are summed over the batch before the estimate, as the official code does, so the
accumulator has the size of one sample's features, whatever the batch.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, combine_rows_batch


@register_weighting("excess_mtl")
class ExcessMTL(GradWeighting):
    uses_weights = "multiplier"
    weights_note = ("each task's loss is multiplied by its weight before the method balances them (its excess-risk "
                    "ratios do not change with a constant multiplier, so the multiplier stays in the update)")
    supports_params = True
    supports_rep = True
    defaults = {"robust_step_size": 1e-2, "eps": 1e-7}
    citation = ("He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi, Zhao, 'Robust Multi-Task Learning with Excess Risks', "
                "ICML 2024.")
    rep_per_sample = True  # on the representation, the gradients are summed over the batch (below)
    state_attrs = ("alpha", "initial")
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.alpha = torch.ones(len(self.tasks), dtype=torch.float64)  # (T,) task weights, summing to T
        self.initial = torch.zeros(len(self.tasks), dtype=torch.float64)  # (T,) first excess estimates
        self.register_buffer("grad_sq", None)  # (T, D) sum of squared gradients (Adagrad's accumulator)

    def excess(self, grads: Tensor) -> Tensor:
        """Each task's excess-risk estimate ``g^T H^{-1} g`` ``(T,)``, after adding ``g^2`` to the accumulator;
        ``grads`` is ``(T, D)``, or ``(T, B, D)`` a sample per row on the representation."""
        g = grads.sum(1) if grads.dim() == 3 else grads  # (T, D)
        if self.grad_sq is None:
            self.grad_sq = torch.zeros_like(g)
        self.grad_sq = self.grad_sq.to(g) + g ** 2
        return (g ** 2 / torch.sqrt(self.grad_sq + self.params["eps"])).sum(1).double().cpu()  # (T,)

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        first = self.grad_sq is None
        e = self.excess(grads)  # (T,)
        new = (self.initial == 0) & (e > 0)
        self.initial = torch.where(new, e, self.initial)
        if not first:
            ratio = torch.where(self.initial > 0, e / self.initial.clamp_min(1e-300), torch.zeros_like(e))  # (T,)
            alpha = self.alpha * torch.exp(self.params["robust_step_size"] * ratio)
            self.alpha = alpha / alpha.sum() * len(self.tasks)
        return combine_rows(self.alpha, grads.flatten(1))

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems ``grads (S, T, D)``, each with its own accumulator, first
        estimates and weights (``_batch_grad_sq``, ``_batch_initial``, ``_batch_alpha``, kept apart from
        the one-problem state): the same arithmetic, in numpy."""
        g = grads.detach().double().cpu().numpy()  # (S, T, D)
        s, t = g.shape[0], g.shape[1]
        acc = getattr(self, "_batch_grad_sq", None)
        first = acc is None or acc.shape != g.shape
        if first:
            acc = np.zeros_like(g)
            self._batch_initial = np.broadcast_to(self.initial.numpy(), (s, t)).copy()
            self._batch_alpha = np.broadcast_to(self.alpha.numpy(), (s, t)).copy()
        acc = acc + g ** 2
        self._batch_grad_sq = acc
        e = (g ** 2 / np.sqrt(acc + self.params["eps"])).sum(2)  # (S, T)
        initial = np.where((self._batch_initial == 0) & (e > 0), e, self._batch_initial)
        self._batch_initial = initial
        if not first:
            ratio = np.where(initial > 0, e / np.maximum(initial, 1e-300), 0.0)
            alpha = self._batch_alpha * np.exp(self.params["robust_step_size"] * ratio)
            self._batch_alpha = alpha / alpha.sum(1, keepdims=True) * t
        return combine_rows_batch(self._batch_alpha, g, grads)
