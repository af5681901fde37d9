"""Aligned-MTL: align the task gradients into an orthogonal, equal-norm system before summing.

Senushkin, D., Patakin, N., Kuznetsov, A. and Konushin, A. "Independent Component Alignment
for Multi-Task Learning." CVPR 2023.

With the Gram ``M = G G^T = V diag(lambda) V^T``, the aligned gradients ``B G`` with
``B = sqrt(lambda_min) V diag(lambda)^{-1/2} V^T`` have Gram ``lambda_min I``: pairwise orthogonal,
each of norm ``sigma_min`` (the smallest singular value of ``G``), so the linear system of
gradients has condition number 1 and no task dominates. The update is their sum,
``1^T B G = sum_t alpha_t g_t`` with ``alpha = B 1`` (the paper's Algorithm 1 with unit task
weights; scale "min" of the official code, github.com/SamsungLabs/MTL). As the official code,
eigenvalues under ``max(lambda) T eps`` are treated as zero (dropped), so linearly dependent
gradients still give a finite update.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import combine_rows, gram


def alignment_matrix(m: Tensor, eps: float = torch.finfo(torch.float32).eps) -> Tensor:
    """``B (T, T)`` such that the rows of ``B G`` are orthogonal with norm ``sigma_min``, from ``m = G G^T``.

    ``eps`` is the precision the Gram was accumulated in (float32 gradients)."""
    lam, v = torch.linalg.eigh(m.double())  # ascending
    keep = lam > lam.max().clamp_min(0.0) * m.shape[0] * eps
    if not keep.any():  # every gradient is zero
        return torch.zeros_like(m, dtype=torch.float64)
    lam, v = lam[keep], v[:, keep]  # (r,), (T, r)
    return lam.min().sqrt() * (v / lam.sqrt()) @ v.T  # (T, T)


@register_weighting("aligned_mtl")
class AlignedMTL(GradWeighting):
    weights_note = "it rescales the task gradients onto a common, well-conditioned basis, which undoes any multiplier"
    supports_params = True
    supports_rep = True
    defaults: dict[str, float] = {}
    citation = ("Senushkin et al., 'Independent Component Alignment for Multi-Task Learning', CVPR 2023 "
                "(Aligned-MTL).")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(alignment_matrix(gram(grads)).sum(0), grads)
