"""FAMO: Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization",
NeurIPS 2023.

Task weights ``z = softmax(xi)`` come from logits ``xi`` with their own Adam (``lr`` 0.025,
weight decay ``gamma`` 1e-3, as in the paper and official code). The model is trained on
``sum_t (z_t / c) log(L_t - l_t)`` with lower bounds ``l_t = 0`` and ``c = sum_t z_t / (L_t - l_t)``
(held constant), so every task's log-loss falls at a balanced rate. ``xi`` is then stepped with
the gradient of ``z . delta``, ``delta_t = log L_t(prev) - log L_t(now)``: a task whose loss fell
fast loses weight, a slow one gains it.

The official code calls ``update(curr_loss)`` after the model's optimiser step, recomputing the
losses on the same batch. That costs a second forward pass; here the update is made at the start
of the next step instead, from the previous step's losses and this step's (a new batch, so
``delta`` is noisier but free). The effective weights reported are ``d total / d L_t =
z_t / (c (L_t - l_t))``, which sum to 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.weighting.base import LossWeighting, register_weighting

EPS = 1e-8  # as in the official code: keeps log finite when a loss reaches its bound


@register_weighting("famo")
class FAMO(LossWeighting):
    weights_note = "it balances the rates at which the losses fall, in log space, where a constant multiplier vanishes"
    citation = ("Liu, Feng, Stone, Liu (2023). FAMO: Fast Adaptive Multitask Optimization. NeurIPS.")
    defaults = {"lr": 0.025, "gamma": 1e-3}
    state_attrs = ("opt",)
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        # (T,) logits, stepped here by their own optimiser, so frozen: the trainer's optimiser leaves them alone
        self.xi = nn.Parameter(torch.zeros(len(self.tasks)), requires_grad=False)
        self.opt = torch.optim.Adam([self.xi], lr=self.params["lr"], weight_decay=self.params["gamma"])
        self.register_buffer("prev", None)  # (T,) last step's losses, detached

    def _update(self, curr: Tensor) -> None:
        delta = torch.log(self.prev.to(curr.device) + EPS) - torch.log(curr + EPS)  # (T,) >0: loss fell
        with torch.enable_grad():
            xi = self.xi.detach().requires_grad_()
            z = torch.softmax(xi, dim=0)  # (T,)
            (d,) = torch.autograd.grad(z, xi, grad_outputs=delta)
        self.opt.zero_grad(set_to_none=True)
        self.xi.grad = d
        self.opt.step()
        self.xi.grad = None  # stepped: no other optimiser holding it may step it again

    def fuse(self, losses, step, shared_params):
        curr = losses.detach().float()  # (T,)
        if self.prev is not None:
            self._update(curr)
        self.prev = curr.clone()
        z = torch.softmax(self.xi.detach(), dim=0).to(losses.dtype)  # (T,)
        d = losses + EPS  # (T,) L_t - l_t with l_t = 0
        c = (z / d).sum().detach()
        total = (z / c * torch.log(d)).sum()
        return total, (z / (c * d)).detach()

    def fuse_batch(self, losses, step):
        """The same on ``S`` problems ``losses (S, T)``, each with its own logits and last losses
        (``_batch_xi (S, T)``, ``_batch_prev``, kept apart from the one-problem state); one Adam over
        the ``(S, T)`` logits is an Adam per problem (it acts element-wise, its step count shared as
        the problems step together)."""
        s, t = losses.shape
        xi = getattr(self, "_batch_xi", None)
        if xi is None or xi.shape != (s, t):
            xi = self.xi.detach().expand(s, t).clone()  # a plain tensor: not one of the module's parameters
            self._batch_xi = xi
            self._batch_opt = torch.optim.Adam([xi], lr=self.params["lr"], weight_decay=self.params["gamma"])
            self._batch_prev = None if self.prev is None else self.prev.expand(s, t).clone()
        curr = losses.detach().float()  # (S, T)
        if self._batch_prev is not None:
            delta = torch.log(self._batch_prev.to(curr.device) + EPS) - torch.log(curr + EPS)
            with torch.enable_grad():
                leaf = xi.detach().requires_grad_()
                (d,) = torch.autograd.grad(torch.softmax(leaf, dim=1), leaf, grad_outputs=delta)
            self._batch_opt.zero_grad(set_to_none=True)
            xi.grad = d
            self._batch_opt.step()
            xi.grad = None
        self._batch_prev = curr.clone()
        z = torch.softmax(xi.detach(), dim=1).to(losses.dtype)  # (S, T)
        d = losses + EPS
        c = (z / d).sum(1, keepdim=True).detach()
        return (z / c * torch.log(d)).sum(1), (z / (c * d)).detach()
