"""Uncertainty weighting (UW): Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics", CVPR 2018.

Each task gets a learnable log-variance ``s_t = log sigma_t^2``; the total is
``sum_t exp(-s_t) L_t + s_t`` (the common form, as in LibMTL), so a noisy task, whose loss cannot
go low, earns a large ``s_t`` and a small weight ``exp(-s_t)``. The ``s_t`` are optimised by the
engine's optimiser together with the model (they are returned by :meth:`parameters`).
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("uw")
class UncertaintyWeighting(LossWeighting):
    citation = ("Kendall, Gal, Cipolla (2018). Multi-Task Learning Using Uncertainty to Weigh Losses "
                "for Scene Geometry and Semantics. CVPR.")
    defaults = {"init_log_var": 0.0}

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.log_var = nn.Parameter(torch.full((len(self.tasks),), float(self.params["init_log_var"])))  # (T,)

    def parameters(self) -> list[nn.Parameter]:
        return [self.log_var]

    def to(self, device):
        # in place, so a Parameter already handed to an optimiser stays the same object
        self.log_var.data = self.log_var.data.to(device)
        return self

    def fuse(self, losses, step, shared_params):
        s = self.log_var.to(losses.dtype)  # (T,)
        total = (torch.exp(-s) * losses + s).sum()
        return total, torch.exp(-s).detach()

    def state_dict(self):
        return {**super().state_dict(), "log_var": self.log_var.detach().cpu().clone()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "log_var" in state:
            self.log_var.data.copy_(torch.as_tensor(state["log_var"], dtype=self.log_var.dtype))
