"""Smooth Tchebycheff scalarisation (STCH): Lin, Zhang, Yang, Liu, Wang, Zhang, "Smooth Tchebycheff
Scalarization for Multi-Objective Optimization", ICML 2024.

``total = T mu log sum_t exp(x_t / mu)`` with ``x_t = log(L_t / n_t)``: a smooth maximum of the
normalised log-losses, so the task furthest behind its reference gets most of the weight; as
``mu -> 0`` it becomes the Tchebycheff max. The reported weights are ``T softmax(x / mu)``, the
weights on the normalised log-losses (they sum to ``T``).

As in LibMTL's STCH, a warm-up trains on ``sum_t log L_t`` (weights 1) while it records the
reference ``n_t``. LibMTL counts the warm-up in epochs and records ``n`` over its last one; here
the warm-up is the first ``warmup`` steps and ``n_t`` is the mean loss over all of them (runs are
counted in steps and may have no epochs).
"""
from __future__ import annotations

import torch
from torch import Tensor

from mtl_core.weighting.base import LossWeighting, register_weighting

EPS = 1e-20  # as in LibMTL: keeps log finite at a zero loss


@register_weighting("stch")
class SmoothTchebycheff(LossWeighting):
    weights_note = "its smooth maximum is over losses divided by their own reference values, so a multiplier cancels out"
    citation = ("Lin, Zhang, Yang, Liu, Wang, Zhang (2024). Smooth Tchebycheff Scalarization for "
                "Multi-Objective Optimization. ICML.")
    defaults = {"mu": 1.0, "warmup": 100.0}
    state_attrs = ("_sum", "_count", "nadir")
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self._sum = [0.0] * len(self.tasks)  # losses summed over the warm-up
        self._count = 0
        self.nadir: Tensor | None = None  # (T,) reference losses once the warm-up is done

    def fuse(self, losses, step, shared_params):
        k = len(self.tasks)
        if self.nadir is None:
            for i, v in enumerate(losses.detach().float().cpu().tolist()):
                self._sum[i] += v
            self._count += 1
            if self._count >= max(1, int(self.params["warmup"])):
                self.nadir = torch.tensor([s / self._count for s in self._sum])
            return torch.log(losses + EPS).sum(), torch.ones_like(losses)
        x = torch.log(losses / self.nadir.to(losses) + EPS)  # (T,)
        mu = self.params["mu"]
        total = k * mu * torch.logsumexp(x / mu, dim=0)  # logsumexp: stable for small mu
        return total, (k * torch.softmax(x.detach() / mu, dim=0))

    def fuse_batch(self, losses, step):
        """The same on ``S`` problems, each with its own warm-up sums and reference (``_batch_sum (S, T)``,
        ``_batch_nadir``; the count is theirs in common), kept apart from the one-problem state; the
        same float32 recording and float32 reference."""
        s, k = losses.shape
        if getattr(self, "_batch_sum", None) is None or self._batch_sum.shape != (s, k):
            self._batch_sum = torch.tensor(self._sum, dtype=torch.float64).expand(s, k).clone()
            self._batch_count = self._count
            self._batch_nadir = None if self.nadir is None else self.nadir.expand(s, k).clone()
        if self._batch_nadir is None:
            self._batch_sum = self._batch_sum + losses.detach().float().cpu().double()
            self._batch_count += 1
            if self._batch_count >= max(1, int(self.params["warmup"])):
                self._batch_nadir = (self._batch_sum / self._batch_count).float()
            return torch.log(losses + EPS).sum(1), torch.ones_like(losses)
        x = torch.log(losses / self._batch_nadir.to(losses) + EPS)  # (S, T)
        mu = self.params["mu"]
        return k * mu * torch.logsumexp(x / mu, dim=1), (k * torch.softmax(x.detach() / mu, dim=1))
