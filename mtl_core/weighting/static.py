"""Static weights: the weighted sum ``sum_t w_t L_t`` with weights a person sets (and may change
while the run goes on). With every weight 1 this is plain equal weighting."""
from __future__ import annotations

import torch

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("static")
class StaticWeights(LossWeighting):
    uses_weights = "weights"
    weights_note = "the weighted sum of the task losses, with these weights"
    citation = "The weighted sum of task losses; see Ruder (2017), 'An Overview of Multi-Task Learning in Deep Neural Networks'."

    batched = True
    fixed_weights = True

    def fuse(self, losses, step, shared_params):
        w = torch.tensor([self.user_weights[t] for t in self.tasks], device=losses.device, dtype=losses.dtype)
        return (w * losses).sum(), w

    def fuse_batch(self, losses, step):
        w = torch.tensor([self.user_weights[t] for t in self.tasks], device=losses.device, dtype=losses.dtype)
        return losses @ w, w.expand_as(losses)
