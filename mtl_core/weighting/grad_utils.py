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

**A task whose gradient is exactly zero** (a batch without its labels: its loss is ``0 * output``)
contributed nothing to the update, whatever coefficient a method gave it; it is reported with
weight 0 (:func:`zero_dead_rows`, applied by :func:`combine_rows`), so the plotted weights and the
logged total ``sum_t w_t L_t`` stay meaningful. That alone never changes an update. Methods whose
equations have no finite solution for such a task (Nash-MTL's and FairGrad's ``w_t -> inf``,
IMTL-G's undefined unit vector ``g_t / ||g_t||``) solve on the other tasks
(:func:`solve_on_live`), which is the limit of their definitions and gives exactly the update
without that task; the others keep their definitions (MGDA's min-norm point is then zero,
CAGrad's and UPGrad's averages still count ``T`` tasks).

Solvers run on the Gram matrix ``G G^T`` in float64 on the CPU (``T`` is a handful), so a method
never holds a second ``(T, D)`` copy and never assumes a device.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def gram(grads: Tensor) -> Tensor:
    """``grads (T, D)`` -> Gram matrix ``(T, T)`` in float64 on the CPU."""
    return (grads @ grads.T).double().cpu()  # (T, T)


def exact_gram(grads: Tensor) -> Tensor:
    """``grads (T, D)`` -> Gram matrix ``(T, T)`` accumulated in float64 (on the gradients' device,
    then the CPU): for the solvers whose pseudo-inverse must tell small but real singular values
    (nearly collinear gradients) from round-off, which in :func:`gram` is float32's."""
    g = grads.double()
    return (g @ g.T).cpu()  # (T, T)


def zero_dead_rows(weights: Tensor, grads: Tensor) -> Tensor:
    """``weights (..., T)`` with 0 where the row of ``grads (..., T, D)`` is exactly zero (that task adds
    nothing to ``sum_t w_t g_t`` whatever its weight, so 0 is the weight it had)."""
    return torch.where(grads.any(dim=-1), weights, torch.zeros_like(weights))  # (..., T)


def combine_rows(weights: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
    """``sum_t w_t g_t`` on the gradients' device and dtype -> ``(combined (D,), weights (T,))``;
    a zero row's weight is reported as 0 (the sum is unchanged)."""
    w = zero_dead_rows(weights.to(device=grads.device, dtype=grads.dtype), grads)  # (T,)
    return w @ grads, w  # (D,), (T,)


def as_numpy_batch(grads: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``grads (S, T, D)`` -> the gradients and their Gram matrices ``(S, T, T)`` as float64 numpy
    on the CPU: the batched forms work in numpy, where a few small problems a step cost
    microseconds that torch's per-operation overhead would make tens of."""
    g = grads.detach().double().cpu().numpy()
    return g, g @ g.transpose(0, 2, 1)


def combine_rows_batch(weights: np.ndarray, grads: np.ndarray, like: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`combine_rows` on ``S`` problems at once: ``weights (S, T)``, ``grads (S, T, D)`` (numpy)
    -> ``(S, D)``, ``(S, T)`` tensors on the device and in the dtype of ``like``."""
    w = np.where(grads.any(axis=2), weights, 0.0)  # (S, T)
    d = np.einsum("st,std->sd", w, grads)
    return (torch.from_numpy(d).to(device=like.device, dtype=like.dtype),
            torch.from_numpy(w).to(device=like.device, dtype=like.dtype))


def live_tasks(m: Tensor) -> Tensor:
    """Indices ``(L,)`` of the tasks whose gradient is not zero, from the Gram ``m (T, T)``."""
    return torch.nonzero(m.diagonal() > 0).flatten()


def solve_on_live(m: Tensor, solve: Callable[[Tensor], Tensor]) -> Tensor:
    """``solve`` run on the Gram of the tasks with a non-zero gradient; weight 0 for the others.
    ``(T,)`` float64. With no zero gradient it is ``solve(m)`` itself."""
    live = live_tasks(m)
    if live.numel() == m.shape[0]:
        return solve(m)
    w = torch.zeros(m.shape[0], dtype=torch.float64)  # (T,)
    if live.numel():
        w[live] = solve(m[live][:, live]).to(w)
    return w


def lstsq_weights(grads: Tensor, combined: Tensor, rtol: float = 1e-6) -> Tensor:
    """Least-squares ``w`` with ``sum_t w_t g_t`` closest to ``combined`` (minimum-norm ``w``
    when the task gradients are linearly dependent). Float64 on the CPU, shape ``(T,)``."""
    g = gram(grads)  # (T, T)
    b = (grads @ combined).double().cpu()  # (T,)
    # rtol well above float64 eps: the Gram was accumulated in the gradients' float32
    w = torch.linalg.pinv(g, rtol=rtol, hermitian=True) @ b  # (T,)
    return zero_dead_rows(w, grads.cpu())


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v (T,)`` onto the probability simplex (Duchi et al., ICML 2008)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1.0
    k = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / k > 0).max())
    theta = css[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0.0)


def project_simplex_batch(v: np.ndarray) -> np.ndarray:
    """:func:`project_simplex` on every row of ``v (S, T)`` at once (numpy float64): the same sort,
    cumulative sum and threshold, row by row (for two tasks written out: the same operations)."""
    if v.shape[1] == 2:
        hi, lo = v.max(1), v.min(1)
        css = (hi + lo) - 1.0
        theta = np.where(lo - css / 2.0 > 0, css / 2.0, hi - 1.0)  # both positive, or the largest alone
        return np.maximum(v - theta[:, None], 0.0)
    u = -np.sort(-v, axis=1)  # (S, T) descending
    css = np.cumsum(u, axis=1) - 1.0
    k = np.arange(1, v.shape[1] + 1, dtype=np.float64)
    positive = u - css / k > 0  # (S, T); the first column always is
    rho = v.shape[1] - 1 - np.argmax(positive[:, ::-1], axis=1)  # (S,) the last positive index
    theta = css[np.arange(v.shape[0]), rho] / (rho + 1)
    return np.maximum(v - theta[:, None], 0.0)


def combine_grads_rows(method, grads: Tensor, losses: Tensor, step: int, rows=None,
                       out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """``method.combine_grads`` on each of the ``rows`` (all by default) of ``grads (S, T, D)``,
    ``losses (S, T)``, in order: the batched forms' answer where their batched solver does not apply.
    Written into ``out`` (``(S, D)``, ``(S, T)``) when given."""
    rows = range(grads.shape[0]) if rows is None else rows
    if out is None:
        out = (torch.zeros(grads.shape[0], grads.shape[2], dtype=grads.dtype, device=grads.device),
               torch.zeros(grads.shape[:2], dtype=grads.dtype, device=grads.device))
    for i in rows:
        d, w = method.combine_grads(grads[i], losses[i], step)
        out[0][i], out[1][i] = d, w.to(out[1])
    return out


def two_task_weights(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The solution of ``m w = 1 / w`` for ``S`` two-task Grams ``m (S, 2, 2)`` (proportional
    fairness) -> ``(w (S, 2), solved (S,))``. Multiplying equation ``t`` by ``w_t`` gives
    ``m_11 w_1^2 + m_12 w_1 w_2 = 1 = m_12 w_1 w_2 + m_22 w_2^2``, so ``w_2 = w_1 (m_11 / m_22)^(1/2)``
    and ``w_1 = (|g_2| / (|g_1| (|g_1| |g_2| + g_1 . g_2)))^(1/2)``, ``w_2`` the same with the tasks
    swapped: a solution exactly where the gradients are not opposite (Newton's steps, on CAGrad's
    toy, reach it to round-off in about 17 steps). The equation of FairGrad at ``alpha`` 1 and of
    Nash-MTL."""
    with np.errstate(all="ignore"):
        norms = np.sqrt(m.diagonal(axis1=1, axis2=2))  # (S, 2)
        product = norms[:, 0] * norms[:, 1]
        both = product + m[:, 0, 1]  # |g_1| |g_2| + g_1 . g_2 = |g_1| |g_2| (1 + cos)
        w = np.sqrt(norms[:, ::-1] / (norms * both[:, None]))
        # 1 + cos is known to about 1e-16 / (1 + cos) of itself: within 1e-13 of opposite, the
        # gradients are opposite as far as float64 can tell, and there is no solution
        solved = (both > 1e-13 * product) & np.isfinite(w).all(1)
    return np.where(solved[:, None], w, 0.0), solved
