"""Equal weighting (EW): every task's loss counts once, ``sum_t L_t``; the usual baseline
(Lin et al. 2022, 'Reasonable Effectiveness of Random Weighting', use it as theirs)."""
from __future__ import annotations

import torch

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("ew")
class EqualWeighting(LossWeighting):
    weights_note = "equal weighting gives every task weight 1 by definition; use the static method for weights of your own"
    citation = "Equal weighting: the sum of task losses (baseline in Lin et al., TMLR 2022)."

    batched = True
    fixed_weights = True

    def fuse(self, losses, step, shared_params):
        w = torch.ones_like(losses)
        return losses.sum(), w

    def fuse_batch(self, losses, step):
        return losses.sum(1), torch.ones_like(losses)
