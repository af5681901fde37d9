"""DB-MTL: Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Kwok, "Dual-Balancing for Multi-Task Learning",
arXiv 2308.12029, 2023.

Two balances. Loss scale: every task is trained on ``log L_t`` rather than ``L_t``, so
multiplying a loss by a constant changes nothing. Gradient magnitude: an exponential moving
average ``m_t`` of each task's gradient (of ``log L_t``, on the shared parameters) is kept,
``m_t <- g_t + beta_n (m_t - g_t)`` with ``beta_n = beta / n^beta_sigma`` at the n-th step; the
update is ``sum_t alpha_t m_t`` with ``alpha_t = max_i ||m_i|| / ||m_t||``, so every task
contributes a gradient of the same norm, the largest one. Defaults ``beta`` 0.9 and
``beta_sigma`` 0 (a constant decay of 0.9) are those of the implementation in LibMTL, the library
of the paper's first author: ``--DB_beta`` 0.9 and ``--DB_beta_sigma`` 0 in ``LibMTL/config.py``, read
by ``LibMTL/weighting/DB_MTL.py`` (github.com/median-research-group/LibMTL, unchanged since
DB-MTL was added there in February 2024). ``beta_sigma`` 0.5 is MoCo's default, not DB-MTL's.

The second balance needs per-task gradients, so this is a gradient method (kind "gradient")
although it starts from the losses. :meth:`prepare` hands the base ``log(L_t + eps)`` instead of
``L_t``: task heads get the gradients of the log-losses too, and :meth:`combine_grads` receives
gradients of the log-losses (``grad L_t / L_t``). Like LibMTL, it works on the shared
parameters only (the moving average needs a gradient of fixed size). The weights reported are
the ``alpha_t``, the weights on the averaged log-loss gradients. A task whose average ``m_t`` is
exactly zero (no gradient yet: so far every batch lacked its labels) contributes nothing,
whatever its ``alpha_t``; it is reported with weight 0, not ``max ||m|| / 1e-8``. A task that
had gradients before keeps a decaying, non-zero ``m_t``, which still enters the update: its
``alpha_t`` is meaningful and reported as it is.
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import zero_dead_rows

EPS = 1e-8  # as in LibMTL: keeps log finite at a zero loss


def balance(buffer: Tensor, grads: Tensor, decay: float) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the gradient balance on ``grads (..., T, D)``, with ``buffer`` the moving average
    so far (same shape) -> ``(new average, update sum_t alpha_t m_t (..., D), alpha (..., T))``."""
    buffer = grads + decay * (buffer - grads)  # (..., T, D)
    norms = torch.linalg.vector_norm(buffer, dim=-1)  # (..., T)
    alpha = norms.amax(-1, keepdim=True) / (norms + 1e-8)  # (..., T)
    # a zero average adds nothing: reported weight 0, not max ||m|| / 1e-8
    return buffer, (alpha.unsqueeze(-2) @ buffer).squeeze(-2), zero_dead_rows(alpha, buffer)


@register_weighting("db_mtl")
class DBMTL(GradWeighting):
    weights_note = "it balances the log-losses and normalises their gradients, so a constant multiplier has no effect"
    citation = ("Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Kwok (2023). Dual-Balancing for Multi-Task Learning. "
                "arXiv:2308.12029.")
    supports_rep = False
    defaults = {"beta": 0.9, "beta_sigma": 0.0}
    state_attrs = ("n",)
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.register_buffer("buffer", None)  # (T, D) moving average of the log-loss gradients
        self.n = 0  # steps seen, for the decay schedule

    def prepare(self, losses, ctx):
        return super().prepare({t: torch.log(v + EPS) for t, v in losses.items()}, ctx)

    def combine_grads(self, grads, losses, step):
        """``grads (T, D)`` of the log-losses -> ``(sum_t alpha_t m_t (D,), alpha (T,))``."""
        self.n += 1
        if self.buffer is None or self.buffer.shape != grads.shape:
            self.buffer = torch.zeros_like(grads)
        self.buffer, d, alpha = balance(self.buffer.to(grads), grads, self._decay(self.n))
        return d, alpha  # (D,), (T,)

    def _decay(self, n: int) -> float:
        return self.params["beta"] / n ** self.params["beta_sigma"]

    def combine_grads_batch(self, grads, losses, step):
        """The same on ``S`` problems ``grads (S, T, D)`` of the log-losses, each with its own moving
        average (``_batch_buffer (S, T, D)``, kept apart from the one-problem state); they step
        together, so one count of steps serves them all."""
        buffer = getattr(self, "_batch_buffer", None)
        if buffer is None or buffer.shape != grads.shape:
            start = self.buffer is not None and self.buffer.shape == grads.shape[1:]
            buffer = self.buffer.to(grads).expand_as(grads).clone() if start else torch.zeros_like(grads)
            self._batch_n = self.n
        self._batch_n += 1
        self._batch_buffer, d, alpha = balance(buffer.to(grads), grads, self._decay(self._batch_n))
        return d, alpha
