"""SDMGrad: stochastic direction-oriented multiple-gradient descent.

Xiao, P., Ban, H. and Ji, K. "Direction-oriented Multi-objective Learning: Simple and Provable
Stochastic Algorithms." NeurIPS 2023.

The update is the MGDA direction pulled towards the mean gradient ``g0``:

    min_{w in simplex} 1/2 ||G^T w + lambda g0||^2,    d = (G^T w + lambda g0) / (1 + lambda)

Each step draws three independent batches: ``zeta`` for the update, ``xi1`` and ``xi2`` for the
weights, whose objective's gradient ``G (G^T w + lambda g0)`` is estimated without bias by one
batch on each side (double sampling):

    M = G_xi1 G_xi2^T / s^2,   s = mean_t sqrt(max(M_tt, 0))          (T, T)
    niter times:  v <- momentum v + (M w + lambda M 1/T),  w <- Proj_simplex(w - lr v)
    d = (G_zeta^T w + lambda mean_t g_zeta,t) / (1 + lambda)

``w`` persists across steps (uniform at first); ``v`` starts at 0 each step. As the authors' code
(github.com/OptMN-Lab/sdmgrad) and LibMTL's ``SDMGrad.py``: SGD with momentum 0.5 for the inner
loop, defaults lambda 0.3 and niter 20 and LibMTL's lr 5 (the authors' 10). Differences: LibMTL
divides by ``s^2 + 1e-8``, which swamps ``s^2`` for small gradients (norms ~1e-4); here by
``s^2`` alone, and a Gram with no positive diagonal is not rescaled. The authors' code allocates
the three gradient matrices as one tensor (``[t] * 3``), so its three roles all see the last
batch; the three batches here are distinct, as in the paper and LibMTL. Their code also scales
the update by ``T`` and clips its norm; here ``d`` is used as it is (clip with
``optim.grad_clip``). The heads get the mean of their gradients over the three batches (LibMTL
and the authors' code their sum). The reported weights ``(w + lambda / T) / (1 + lambda)``
reproduce ``d`` exactly.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting.base import MultiBatchWeighting, register_weighting
from mtl_core.weighting.grad_utils import (
    as_numpy_batch,
    combine_rows,
    combine_rows_batch,
    project_simplex,
    project_simplex_batch,
)


@register_weighting("sdmgrad")
class SDMGrad(MultiBatchWeighting):
    weights_note = "it chooses every weight itself, between the tasks' min-norm point and their mean"
    batches_per_step = 3
    defaults = {"lambda": 0.3, "niter": 20.0, "lr": 5.0, "momentum": 0.5}
    state_attrs = ("w",)
    batched = True
    citation = ("Xiao, Ban, Ji, 'Direction-oriented Multi-objective Learning: Simple and Provable Stochastic "
                "Algorithms', NeurIPS 2023 (SDMGrad).")

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__(tasks, params=params, weights=weights, rep_grad=rep_grad)
        p = self.params
        if p["lambda"] < 0:
            raise ConfigError("weighting.params.lambda", f"lambda={p['lambda']} is negative; use lambda >= 0 "
                              "(0 is MGDA's min-norm direction, larger is closer to the mean gradient)")
        if p["niter"] < 1 or p["niter"] != int(p["niter"]):
            raise ConfigError("weighting.params.niter", f"niter={p['niter']} is not a whole number >= 1; "
                              "use the inner loop's number of steps (default 20)")
        if p["lr"] <= 0 or not 0 <= p["momentum"] < 1:
            raise ConfigError("weighting.params.lr" if p["lr"] <= 0 else "weighting.params.momentum",
                              f"lr={p['lr']}, momentum={p['momentum']}: use lr > 0 and 0 <= momentum < 1")
        n = len(self.tasks)
        self.w = torch.full((n,), 1.0 / n, dtype=torch.float64)  # (T,) on the simplex

    def combine_multi(self, grads: list[Tensor], losses: list[Tensor], step: int) -> tuple[Tensor, Tensor]:
        zeta, xi1, xi2 = grads
        p = self.params
        lam = p["lambda"]
        m = (xi1 @ xi2.T).double().cpu()  # (T, T): (i, j) = <xi1_i, xi2_j>
        s2 = float(m.diagonal().clamp_min(0.0).sqrt().mean()) ** 2
        if s2 > 0.0:  # the inner step size then suits gradients of any size
            m = m / s2
        mg = m.mean(dim=1)  # (T,): G_xi1 g0_xi2, the pull towards the mean gradient
        v = torch.zeros_like(self.w)
        for _ in range(int(p["niter"])):
            v = p["momentum"] * v + (m @ self.w + lam * mg)  # (T,)
            self.w = project_simplex(self.w - p["lr"] * v)
        t = self.w.numel()
        return combine_rows((self.w + lam / t) / (1.0 + lam), zeta)  # (D,), (T,)

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """:meth:`combine_grads` (one batch in all three roles) on ``S`` problems, each with its own
        ``w`` (``_batch_w (S, T)``, kept apart from the one-problem state): the same inner loop, the
        same arithmetic, every problem at once (:func:`project_simplex_batch`)."""
        g, m = as_numpy_batch(grads)  # (S, T, D), (S, T, T)
        s, t = m.shape[0], m.shape[1]
        p = self.params
        lam = p["lambda"]
        w = getattr(self, "_batch_w", None)
        if w is None or w.shape != (s, t):
            w = np.broadcast_to(self.w.numpy(), (s, t)).copy()  # the one-problem start: uniform
        s2 = np.sqrt(np.maximum(m.diagonal(axis1=1, axis2=2), 0.0)).mean(1) ** 2  # (S,)
        m = m / np.where(s2 > 0.0, s2, 1.0)[:, None, None]
        mg = m.mean(2)  # (S, T)
        v = np.zeros((s, t))
        for _ in range(int(p["niter"])):
            v = p["momentum"] * v + ((m @ w[:, :, None])[:, :, 0] + lam * mg)
            w = project_simplex_batch(w - p["lr"] * v)
        self._batch_w = w
        return combine_rows_batch((w + lam / t) / (1.0 + lam), g, grads)
