"""Dynamic weight average (DWA): Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019.

``w_t = K exp(r_t / T) / sum_i exp(r_i / T)`` with ``r_t = L_t(k-1) / L_t(k-2)``: a task whose loss
fell less over the last period gets more weight; the weights sum to ``K``, the number of tasks.

The paper averages losses over epochs. Runs here are counted in steps and may not have epochs,
so a period is a window of ``window`` consecutive steps (default 20): ``L_t(k)`` is the mean loss
of task ``t`` over window ``k``, and the weights stay fixed within a window. Until two windows
have been seen every weight is 1 (the paper's first two epochs).
"""
from __future__ import annotations

import numpy as np
import torch

from mtl_core.weighting.base import LossWeighting, register_weighting


@register_weighting("dwa")
class DynamicWeightAverage(LossWeighting):
    uses_weights = "multiplier"
    weights_note = "each task's loss is multiplied by its weight before the method balances them"
    citation = "Liu, Johns, Davison (2019). End-to-End Multi-Task Learning with Attention. CVPR."
    defaults = {"temperature": 2.0, "window": 20.0}
    state_attrs = ("_sum", "_count", "_history")
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self._sum = [0.0] * len(self.tasks)  # losses summed over the current window
        self._count = 0
        self._history: list[list[float]] = []  # mean losses of the last two finished windows

    def current_weights(self) -> list[float]:
        """The weights this window uses (all 1 until two windows are done)."""
        k = len(self.tasks)
        if len(self._history) < 2:
            return [1.0] * k
        prev, older = torch.tensor(self._history[-1]), torch.tensor(self._history[-2])
        ratio = prev / older.clamp_min(1e-12)  # (T,)
        return (k * torch.softmax(ratio / self.params["temperature"], dim=0)).tolist()

    def fuse(self, losses, step, shared_params):
        w = torch.tensor(self.current_weights(), device=losses.device, dtype=losses.dtype)  # (T,)
        total = (w * losses).sum()
        # record after choosing: this step's loss belongs to the window the weights came from
        for i, v in enumerate(losses.detach().float().cpu().tolist()):
            self._sum[i] += v
        self._count += 1
        if self._count >= max(1, int(self.params["window"])):
            self._history = (self._history + [[s / self._count for s in self._sum]])[-2:]
            self._sum, self._count = [0.0] * len(self.tasks), 0
        return total, w

    def fuse_batch(self, losses, step):
        """The same on ``S`` problems, each with its own windows (``_batch_sum (S, T)``, ``_batch_history``,
        a list of ``(S, T)``; the count is theirs in common), kept apart from the one-problem state;
        the same float32 recording and float32 softmax."""
        s, k = losses.shape
        if getattr(self, "_batch_sum", None) is None or self._batch_sum.shape != (s, k):
            self._batch_sum = np.broadcast_to(np.asarray(self._sum, dtype=np.float64), (s, k)).copy()
            self._batch_count = self._count
            self._batch_history = [np.broadcast_to(np.asarray(h, dtype=np.float64), (s, k)).copy() for h in self._history]
        if len(self._batch_history) < 2:
            w = torch.ones_like(losses)
        else:
            prev, older = (torch.from_numpy(h).float() for h in self._batch_history[-2:][::-1])
            ratio = prev / older.clamp_min(1e-12)  # (S, T), float32 as current_weights
            w = (k * torch.softmax(ratio / self.params["temperature"], dim=1)).to(device=losses.device,
                                                                                 dtype=losses.dtype)
        total = (w * losses).sum(1)
        self._batch_sum = self._batch_sum + losses.detach().float().cpu().double().numpy()
        self._batch_count += 1
        if self._batch_count >= max(1, int(self.params["window"])):
            self._batch_history = (self._batch_history + [self._batch_sum / self._batch_count])[-2:]
            self._batch_sum, self._batch_count = np.zeros((s, k)), 0
        return total, w
