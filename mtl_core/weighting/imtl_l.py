"""IMTL-L, the loss-balance half of Impartial Multi-Task Learning: Liu et al., "Towards Impartial
Multi-task Learning", ICLR 2021.

Each task gets a learnable scale ``s_t``; the total is ``sum_t exp(s_t) L_t - s_t``. For fixed
losses its minimum over ``s_t`` is at ``exp(s_t) L_t = 1``: every scaled loss is equal, whatever
each loss's own scale (the paper's scale invariance). The ``s_t`` are optimised by the engine's
optimiser together with the model (they are returned by :meth:`parameters`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.weighting.base import LossWeighting, register_weighting


def scaled_loss(loss: Tensor, scale: Tensor) -> Tensor:
    """IMTL-L's ``exp(s) L - s``, elementwise (one task, or a ``(T,)`` vector of them)."""
    return torch.exp(scale) * loss - scale


@register_weighting("imtl_l")
class IMTLL(LossWeighting):
    weights_note = "it learns a scale for every loss so that the scaled losses are equal, which undoes any multiplier"
    citation = "Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang (2021). Towards Impartial Multi-task Learning. ICLR."

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.scale = nn.Parameter(torch.zeros(len(self.tasks)))  # (T,) log of each task's weight

    batched = True

    def fuse(self, losses, step, shared_params):
        return self.fuse_batch(losses, step)  # one problem: (T,) losses and scales

    def fuse_batch(self, losses, step):
        """``losses (..., T)`` and the scales, ``(T,)`` or a row per problem (:meth:`per_problem`)."""
        s = self.scale.to(losses.dtype)  # (..., T)
        return scaled_loss(losses, s).sum(-1), torch.exp(s).detach()
