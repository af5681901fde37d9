"""Geometric loss strategy (GLS): Chennupati, Sistu, Yogamani, Rawashdeh, "MultiNet++:
Multi-Stream Feature Aggregation and Geometric Loss Strategy for Multi-Task Learning",
CVPR Workshops 2019.

The total is the geometric mean ``(prod_t L_t)^(1/T)``; it needs no hyperparameter and is
invariant to each loss's scale in direction. Its effective weights are the derivatives
``d total / d L_t = total / (T L_t)``: a task with a small loss gets a large weight.
"""
from __future__ import annotations

import torch

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("gls")
class GeometricLossStrategy(LossWeighting):
    weights_note = "the geometric mean of the losses has the same gradient direction whatever constant a loss is multiplied by"
    citation = ("Chennupati, Sistu, Yogamani, Rawashdeh (2019). MultiNet++: Multi-Stream Feature Aggregation "
                "and Geometric Loss Strategy for Multi-Task Learning. CVPR Workshops.")

    batched = True

    def fuse(self, losses, step, shared_params):
        # exp(mean(log L)) rather than prod(L)**(1/T): the product under- or overflows with many tasks
        total = torch.exp(torch.log(losses.clamp_min(1e-12)).mean())
        w = (total / (len(self.tasks) * losses.clamp_min(1e-12))).detach()  # (T,)
        return total, w

    def fuse_batch(self, losses, step):
        total = torch.exp(torch.log(losses.clamp_min(1e-12)).mean(1))  # (S,)
        return total, (total[:, None] / (len(self.tasks) * losses.clamp_min(1e-12))).detach()
