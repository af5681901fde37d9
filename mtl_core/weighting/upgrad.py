"""UPGrad: average the projections of the task gradients onto the dual cone of all of them.

Quinton, P. and Rey, V. "Jacobian Descent for Multi-Objective Optimization." arXiv:2406.16232, 2024.

The dual cone of the rows of the Jacobian ``J = G`` is the set of directions ``d`` with
``g_t . d >= 0`` for every task. UPGrad projects each ``g_i`` onto it and averages:
``d = (1/T) sum_i pi(g_i)``, so the update conflicts with no task and equals the mean gradient
when no pair of gradients conflicts. By the paper's Proposition 1, ``pi(J^T u) = J^T v`` with
``v = argmin v^T M v`` subject to ``v >= u`` (``M = J J^T``); here each such QP (one per task,
``u = e_i / T``) is solved exactly with scipy's bounded-variable least squares on a square root of
``M``. As the reference implementation (torchjd, also in LibMTL), ``M`` is first divided by its
trace and ``reg_eps`` is added to its diagonal; defaults are theirs. A person's task weights are
its preference vector (torchjd's ``pref_vector``): ``d = sum_i p_i pi(g_i)`` with ``p`` the weights
normalised to sum to 1, uniform by default. Note, as there, that a trace
(sum of squared gradient norms) under ``norm_eps`` counts as zero gradients and gives the plain
mean: lower ``norm_eps`` if the task gradients are that small.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import lsq_linear
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import as_numpy_batch, combine_grads_rows, combine_rows, combine_rows_batch, gram


def dual_cone_weights(m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``v`` minimising ``v^T m v`` subject to ``v >= u``, for a positive semi-definite ``m (T, T)``."""
    lam, vec = np.linalg.eigh(m)
    root = np.sqrt(np.clip(lam, 0.0, None))[:, None] * vec.T  # (T, T), root^T root = m
    res = lsq_linear(root, np.zeros(m.shape[0]), bounds=(u, np.inf), method="bvls", tol=1e-12)
    return np.maximum(res.x, u)


def regularised_gram(m: Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> np.ndarray:
    """The Gram ``m (T, T)`` divided by its trace, plus ``reg_eps`` on the diagonal, as torchjd does;
    as there, a trace under ``norm_eps`` counts as zero gradients."""
    trace = float(m.diagonal().sum())
    return (m / trace if trace > 0 and trace >= norm_eps else torch.zeros_like(m)).numpy() + reg_eps * np.eye(m.shape[0])


def dual_cone_weights_batch(m: np.ndarray, u: np.ndarray) -> np.ndarray:
    """:func:`dual_cone_weights` for ``B`` positive definite ``m (B, T, T)`` and bounds ``u (B, T)`` at
    once (numpy) -> ``v (B, T)``, by enumerating the active sets (``2^T`` of them: for ``T <= 3``).

    The QP is strictly convex, so its solution is the one point meeting its KKT conditions: on the
    face where the tasks of a set ``F`` are free and the others at their bound, ``(M v)_F = 0`` and
    ``v_B = u_B``; it is the solution iff ``v_F >= u_F`` and ``(M v)_B >= 0``. Every face's point is
    solved (one batched linear solve) and the one that violates these least is taken: the exact
    solution up to round-off, where BVLS (an active-set method too) stops at the same point."""
    b, t = u.shape
    free = ((np.arange(2 ** t)[:, None] >> np.arange(t)) & 1).astype(bool)  # (K, T) every free set
    eye = np.eye(t)
    k = np.where(free[None, :, :, None], m[:, None], eye)  # (B, K, T, T): M's rows where free, e_t's where bound
    rhs = np.where(free[None], 0.0, u[:, None])  # (B, K, T)
    v = np.linalg.solve(k, rhs[..., None])[..., 0]  # (B, K, T)
    mv = (m[:, None] @ v[..., None])[..., 0]  # (B, K, T)
    size = np.maximum(np.abs(u).max(1), 1e-300)[:, None]  # (B, 1)
    primal = np.where(free[None], u[:, None] - v, 0.0).max(2) / size  # below the bound
    dual = np.where(free[None], 0.0, -mv).max(2) / (size * np.abs(m).max((1, 2))[:, None])  # pushing into it
    best = np.maximum(primal, dual).argmin(1)  # (B,)
    return np.maximum(v[np.arange(b), best], u)


def regularised_gram_batch(m: np.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> np.ndarray:
    """:func:`regularised_gram` for ``S`` Gram matrices ``m (S, T, T)`` at once (numpy)."""
    trace = m.diagonal(axis1=1, axis2=2).sum(1)  # (S,)
    ok = (trace > 0) & (trace >= norm_eps)
    return np.where(ok[:, None, None], m / np.where(ok, trace, 1.0)[:, None, None], 0.0) + reg_eps * np.eye(m.shape[1])


def dual_cone_batch(method: GradWeighting, grads: Tensor, losses: Tensor, step: int,
                    weights_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[Tensor, Tensor]:
    """The batched form UPGrad and DualProj share: ``weights_of(mn (S, T, T), p (T,)) -> (S, T)`` on
    the regularised Grams and the preference, for up to three tasks (their QPs solved exactly at once
    by :func:`dual_cone_weights_batch`, the point BVLS finds); one problem at a time beyond, or
    without ``reg_eps`` (a singular QP)."""
    if grads.shape[1] > 3 or not method.params["reg_eps"] > 0:
        return combine_grads_rows(method, grads, losses, step)
    g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
    mn = regularised_gram_batch(m, float(method.params["norm_eps"]), float(method.params["reg_eps"]))
    return combine_rows_batch(weights_of(mn, method.preference().numpy()), g, grads)


def upgrad_weights_batch(mn: np.ndarray, p: np.ndarray) -> np.ndarray:
    """UPGrad's weights on ``S`` regularised Grams: the ``S T`` projections of ``e_i p_i`` at once, summed."""
    s, t = mn.shape[0], mn.shape[1]
    v = dual_cone_weights_batch(np.repeat(mn, t, axis=0), np.tile(np.eye(t) * p, (s, 1)))  # (S T, T)
    return v.reshape(s, t, t).sum(1)


def upgrad_weights(m: Tensor, norm_eps: float = 1e-4, reg_eps: float = 1e-4, pref: Tensor | None = None) -> Tensor:
    """UPGrad's ``w (T,)`` (update ``sum_t w_t g_t``) from the Gram ``m (T, T)``; ``pref (T,)``
    (summing to 1, uniform by default) weighs the projected gradients, as torchjd's ``pref_vector``."""
    t = m.shape[0]
    p = (torch.full((t,), 1.0 / t, dtype=torch.float64) if pref is None else pref.double()).numpy()
    mn = regularised_gram(m, norm_eps, reg_eps)
    w = sum(dual_cone_weights(mn, np.eye(t)[i] * p[i]) for i in range(t))
    return torch.from_numpy(np.asarray(w, dtype=np.float64))


@register_weighting("upgrad")
class UPGrad(GradWeighting):
    uses_weights = "preference"
    weights_note = "the weights are its preference vector over the tasks' projected gradients (normalised to sum to 1)"
    supports_params = True
    supports_rep = True
    defaults = {"norm_eps": 1e-4, "reg_eps": 1e-4}
    batched = True
    citation = "Quinton & Rey, 'Jacobian Descent for Multi-Objective Optimization', arXiv:2406.16232, 2024 (UPGrad)."

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        w = upgrad_weights(gram(grads), float(self.params["norm_eps"]), float(self.params["reg_eps"]), self.preference())
        return combine_rows(w, grads)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems (:func:`dual_cone_batch`, :func:`upgrad_weights_batch`)."""
        return dual_cone_batch(self, grads, losses, step, upgrad_weights_batch)
