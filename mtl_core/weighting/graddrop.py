"""GradDrop (Gradient Sign Dropout): keep, per coordinate, only one sign of the task gradients.

Chen, Z., Ngiam, J., Huang, Y., Luong, T., Kretzschmar, H., Chai, Y. and Anguelov, D.
"Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout." NeurIPS 2020.

Per coordinate, the positive sign purity ``P = (1 + sum_t g_t / sum_t |g_t|) / 2``; with
``U ~ Uniform(0, 1)`` drawn once per coordinate, the positive task gradients are kept where
``P > U`` and the negative ones where ``P < U``; a task's dropped entries are scaled by ``leak``
instead of zeroed (0 by default, as LibMTL). So where the tasks agree on a sign nothing is dropped,
and where they disagree the sign the majority of the gradient mass points to wins more often.
GradDrop is defined on activations (use ``rep_grad``); on parameters it works coordinate-wise
the same way. Simplification: the method sees one flat gradient per task, so ``P`` is taken per
coordinate of the flattened activation gradient, without the paper's sign-of-input correction
and sum over the batch (the paper's ``sum_batch sign(A) dL/dA``). ``U`` comes from the method's
own generator, seeded by ``seed``. The result leaves the span of the task gradients, so the
reported weights are least-squares coefficients (``grad_utils.lstsq_weights``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import GradWeighting, register_weighting
from mtl_core.weighting.grad_utils import lstsq_weights


@register_weighting("graddrop")
class GradDrop(GradWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    supports_params = True
    supports_rep = True
    defaults = {"leak": 0.0, "seed": 0.0}
    state_attrs = ("generator",)
    batched = True
    citation = ("Chen et al., 'Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
                "Dropout', NeurIPS 2020.")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        if not 0.0 <= self.params["leak"] <= 1.0:
            raise ConfigError("weighting.params.leak",
                              f"leak={self.params['leak']} is outside [0, 1]; 0 drops fully, 1 keeps all")
        self.generator = torch.Generator().manual_seed(int(self.params["seed"]))

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        leak = float(self.params["leak"])
        purity = 0.5 * (1.0 + grads.sum(0) / (grads.abs().sum(0) + 1e-12))  # (D,) in [0, 1]
        u = torch.rand(purity.shape, generator=self.generator).to(purity.device)  # (D,)
        keep = ((purity > u) & (grads > 0)) | ((purity < u) & (grads < 0))  # (T, D)
        g = torch.where(keep, grads, leak * grads).sum(0)  # (D,) dropped entries scaled by leak
        return g, lstsq_weights(grads, g).to(device=grads.device, dtype=grads.dtype)


    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """The same on ``S`` problems: ``U`` drawn as ``S`` calls in a row draw it, the masks and the
        least-squares weights (one batched pseudo-inverse, the same cut) for every problem at once."""
        leak = float(self.params["leak"])
        s, t, dim = grads.shape
        u = torch.stack([torch.rand(dim, generator=self.generator) for _ in range(s)]).double().numpy()  # (S, D)
        g = grads.detach().double().cpu().numpy()  # (S, T, D)
        purity = 0.5 * (1.0 + g.sum(1) / (np.abs(g).sum(1) + 1e-12))  # (S, D)
        keep = ((purity > u)[:, None] & (g > 0)) | ((purity < u)[:, None] & (g < 0))  # (S, T, D)
        d = np.where(keep, g, leak * g).sum(1)  # (S, D)
        m = g @ g.transpose(0, 2, 1)  # (S, T, T)
        w = (np.linalg.pinv(m, rcond=1e-6, hermitian=True) @ (g @ d[:, :, None]))[:, :, 0]  # as lstsq_weights
        w = np.where(g.any(axis=2), w, 0.0)
        return (torch.from_numpy(d).to(device=grads.device, dtype=grads.dtype),
                torch.from_numpy(w).to(device=grads.device, dtype=grads.dtype))
