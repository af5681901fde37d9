"""The min-norm point in the convex hull of the task gradients, on their Gram matrix.

    min_{w in simplex} || sum_t w_t g_t ||^2 = w^T M w,   M = G G^T  (T, T)

Two tasks have a closed form (Sener & Koltun 2018, Algorithm 1); more use Frank-Wolfe with exact
line search (their Algorithm 2), started from the best pair as in their official code
(github.com/isl-org/MultiObjectiveOptimization, ``min_norm_solvers.py``).

Sener, O. and Koltun, V. "Multi-Task Learning as Multi-Objective Optimization." NeurIPS 2018.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def min_norm_2(aa: float, ab: float, bb: float) -> float:
    """``gamma`` in [0, 1] minimising ``||(1 - gamma) a + gamma b||^2`` given the inner products."""
    denom = aa + bb - 2.0 * ab  # ||a - b||^2
    if denom <= 1e-20:  # a == b: every point of the segment is the same
        return 0.0
    return float(min(1.0, max(0.0, (aa - ab) / denom)))


def min_norm_weights(m: Tensor, max_iter: int = 250, tol: float = 1e-8) -> Tensor:
    """Simplex weights ``(T,)`` of the min-norm point, given the Gram matrix ``m (T, T)``.

    Exact for ``T <= 2``; Frank-Wolfe for more, stopped when the duality gap falls under
    ``tol`` times the largest squared gradient norm, or after ``max_iter`` steps.
    """
    m = m.double()
    t = m.shape[0]
    w = torch.zeros(t, dtype=torch.float64, device=m.device)
    if t == 1:
        return w + 1.0
    scale = float(m.diagonal().max())
    if scale <= 0.0:  # every gradient is zero: any point is the min-norm point
        return w + 1.0 / t
    # best pair as the starting point (and the answer for T == 2)
    best = None
    for i in range(t):
        for j in range(i + 1, t):
            gamma = min_norm_2(float(m[i, i]), float(m[i, j]), float(m[j, j]))
            cost = (1 - gamma) ** 2 * m[i, i] + 2 * gamma * (1 - gamma) * m[i, j] + gamma ** 2 * m[j, j]
            if best is None or cost < best[0]:
                best = (float(cost), i, j, gamma)
    _, i, j, gamma = best
    w[i], w[j] = 1.0 - gamma, gamma
    if t == 2:
        return w
    for _ in range(max_iter):
        mw = m @ w  # (T,) inner products of the current point with every g_t
        vv = float(w @ mw)  # ||current point||^2
        k = int(torch.argmin(mw))  # the vertex most opposed to the current point
        if vv - float(mw[k]) <= tol * scale:  # Frank-Wolfe duality gap
            break
        gamma = min_norm_2(vv, float(mw[k]), float(m[k, k]))
        w = (1.0 - gamma) * w
        w[k] += gamma
    return w



def simplex_candidates(m: np.ndarray) -> np.ndarray:
    """Candidate simplex weights ``(S, K, T)`` for ``T <= 3`` problems with Gram matrices ``m (S, T, T)``
    (numpy, float64): every vertex, the min-norm point of every edge and, for three tasks, the
    stationary point of ``w^T M w`` on the plane ``1^T w = 1`` (its bordered KKT system; NaN where
    that is singular or the point leaves the simplex). The min-norm point is one of them, so taking
    the best is exact. Numpy: the playground calls it every step, on a few problems, where torch's
    per-operation cost would dominate."""
    s, t = m.shape[0], m.shape[1]
    cands = [np.broadcast_to(np.eye(t), (s, t, t))]  # the vertices
    for i in range(t):
        for j in range(i + 1, t):
            aa, ab, bb = m[:, i, i], m[:, i, j], m[:, j, j]
            denom = aa + bb - 2.0 * ab
            gamma = np.where(denom > 1e-20, np.clip((aa - ab) / np.maximum(denom, 1e-300), 0.0, 1.0), 0.0)
            w = np.zeros((s, 1, t))
            w[:, 0, i], w[:, 0, j] = 1.0 - gamma, gamma
            cands.append(w)
    if t == 3:
        border = np.ones((s, t + 1, t + 1))
        border[:, :t, :t], border[:, t, t] = m, 0.0
        size = np.maximum(np.abs(m).reshape(s, -1).max(1), 1e-300)
        regular = np.abs(np.linalg.det(border)) > 1e-12 * size ** 2
        border[~regular] = np.eye(t + 1)
        rhs = np.zeros((s, t + 1, 1))
        rhs[:, t] = 1.0
        w = np.linalg.solve(border, rhs)[:, :t, 0]
        ok = regular & (w >= -1e-12).all(1)
        cands.append(np.where(ok[:, None], np.maximum(w, 0.0), np.nan)[:, None])
    return np.concatenate(cands, axis=1)


def min_norm_weights_batch(mm: np.ndarray) -> np.ndarray:
    """:func:`min_norm_weights` for ``S`` Gram matrices ``mm (S, T, T)`` (numpy float64) at once ->
    ``(S, T)``; exact (every face's minimiser compared) for ``T <= 3``, one problem at a time beyond."""
    s, t = mm.shape[0], mm.shape[1]
    if t > 3:
        return np.stack([min_norm_weights(torch.from_numpy(mi)).numpy() for mi in mm])
    if t == 1:
        return np.ones((s, 1))
    w = simplex_candidates(mm)  # (S, K, T)
    cost = np.nan_to_num(np.einsum("skt,stu,sku->sk", w, mm, w), nan=np.inf)
    best = w[np.arange(s), cost.argmin(1)]  # (S, T)
    zero = mm.diagonal(axis1=1, axis2=2).max(1) <= 0.0  # every gradient zero: the centre, as the one-problem form
    return np.where(zero[:, None], 1.0 / t, best)
