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

import numpy as np
import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_rows, combine_rows_batch, gram


def alignment_matrix(m: Tensor, eps: float = torch.finfo(torch.float32).eps) -> Tensor:
    """``B (T, T)`` such that the rows of ``B G`` are orthogonal with norm ``sigma_min``, from ``m = G G^T``.

    ``eps`` is the precision the Gram was accumulated in (float32 gradients)."""
    lam, v = torch.linalg.eigh(m.double())  # ascending
    keep = lam > lam.max().clamp_min(0.0) * m.shape[0] * eps
    if not keep.any():  # every gradient is zero
        return torch.zeros_like(m, dtype=torch.float64)
    lam, v = lam[keep], v[:, keep]  # (r,), (T, r)
    return lam.min().sqrt() * (v / lam.sqrt()) @ v.T  # (T, T)


def alignment_matrix_batch(m: np.ndarray, eps: float = float(np.finfo(np.float32).eps)) -> np.ndarray:
    """:func:`alignment_matrix` for ``S`` Gram matrices ``m (S, T, T)`` at once (numpy): the same
    eigendecomposition (LAPACK's, as torch's) and the same cut, row by row."""
    lam, v = np.linalg.eigh(m)  # (S, T) ascending, (S, T, T)
    keep = lam > np.maximum(lam.max(1, keepdims=True), 0.0) * m.shape[1] * eps  # (S, T)
    smallest = np.where(keep, lam, np.inf).min(1)  # (S,) the smallest kept eigenvalue
    inv_root = np.where(keep, 1.0 / np.sqrt(np.where(keep, lam, 1.0)), 0.0)  # (S, T)
    b = np.sqrt(np.where(keep.any(1), smallest, 0.0))[:, None, None] * (v * inv_root[:, None, :]) @ v.transpose(0, 2, 1)
    return b  # (S, T, T), zero where every gradient is zero


@register_weighting("aligned_mtl")
class AlignedMTL(GradWeighting):
    weights_note = "it rescales the task gradients onto a common, well-conditioned basis, which undoes any multiplier"
    supports_params = True
    supports_rep = True
    defaults: dict[str, float] = {}
    batched = True
    citation = ("Senushkin et al., 'Independent Component Alignment for Multi-Task Learning', CVPR 2023 "
                "(Aligned-MTL).")

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return combine_rows(alignment_matrix(gram(grads)).sum(0), grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: one batched eigendecomposition (:func:`alignment_matrix_batch`)."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        return combine_rows_batch(alignment_matrix_batch(m).sum(1), g, grads)
