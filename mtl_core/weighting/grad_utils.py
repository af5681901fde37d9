"""Helpers shared by the gradient-combination methods (small ``T x T`` algebra).

**Effective weights.** Every gradient method reports ``w`` of shape ``(T,)`` such that its
combined gradient is ``sum_t w_t g_t``, ``g_t`` being the task gradients it received:

- methods that form such a sum report its coefficients exactly (MGDA, CAGrad, IMTL-G, Nash-MTL,
  Aligned-MTL, UPGrad, FairGrad);
- PCGrad and GradVac only add multiples of task gradients to task gradients, so their result stays
  in the span of ``g_1..g_T``; they track those coefficients as they project (exact, and defined
  even when the task gradients are linearly dependent);
- GradDrop masks single coordinates, so its result leaves that span: it reports the least-squares
  coefficients of :func:`lstsq_weights`;
- MoCo combines its *tracked* gradients ``y_t``, not this step's ``g_t``: it reports its ``lambda``.

Solvers run on the Gram matrix ``G G^T`` in float64 on the CPU (``T`` is a handful), so a method
never holds a second ``(T, D)`` copy and never assumes a device.
"""
from __future__ import annotations

import torch
from torch import Tensor


def gram(grads: Tensor) -> Tensor:
    """``grads (T, D)`` -> Gram matrix ``(T, T)`` in float64 on the CPU."""
    return (grads @ grads.T).double().cpu()  # (T, T)


def combine_rows(weights: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
    """``sum_t w_t g_t`` on the gradients' device and dtype -> ``(combined (D,), weights (T,))``."""
    w = weights.to(device=grads.device, dtype=grads.dtype)  # (T,)
    return w @ grads, w  # (D,), (T,)


def lstsq_weights(grads: Tensor, combined: Tensor, rtol: float = 1e-6) -> Tensor:
    """Least-squares ``w`` with ``sum_t w_t g_t`` closest to ``combined`` (minimum-norm ``w``
    when the task gradients are linearly dependent). Float64 on the CPU, shape ``(T,)``."""
    g = gram(grads)  # (T, T)
    b = (grads @ combined).double().cpu()  # (T,)
    # rtol well above float64 eps: the Gram was accumulated in the gradients' float32
    return torch.linalg.pinv(g, rtol=rtol, hermitian=True) @ b  # (T,)


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v (T,)`` onto the probability simplex (Duchi et al., ICML 2008)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1.0
    k = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / k > 0).max())
    theta = css[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0.0)
