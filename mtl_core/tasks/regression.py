"""A number per image (kind ``regression``): an age, a price, an angle.

A linear output on the pooled head, trained with the L1 loss (the default: robust to the odd
wrong label) or smooth L1 (Girshick, "Fast R-CNN", ICCV 2015; ``loss: smooth_l1``). The loss is
taken on standardised values, ``(y - mean) / std`` with the training labels' mean and standard
deviation (spec options ``mean`` and ``std``, which a label table fills in), so a task in years
and one in metres start with losses of one size and the head starts near the answer; the
metrics are in the label's own units: ``mae`` (primary, lower is better), ``rmse`` and ``r2``
(the coefficient of determination, scikit-learn's ``r2_score``).
"""
from __future__ import annotations

import math
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.errors import ConfigError
from mtl_core.tasks.base import Task, register_kind
from mtl_core.tasks.classification import pooled_head

LOSSES = ("l1", "smooth_l1")


def r2_score(pred: Tensor, truth: Tensor) -> float:
    """``1 - SS_res / SS_tot``; for constant truths 1.0 when every prediction is exact, else 0.0
    (scikit-learn's ``force_finite``). 0.0 for an empty set."""
    if truth.numel() == 0:
        return 0.0
    ss_res = float(((truth - pred) ** 2).sum())
    ss_tot = float(((truth - truth.mean()) ** 2).sum())
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


@register_kind("regression")
class Regression(Task):
    """One real number per image (target: a float scalar); see the module docstring."""

    kind = "regression"
    primary = "mae"
    higher_is_better = False

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        self.loss_name = self.spec.loss or "l1"
        if self.loss_name not in LOSSES:
            raise ConfigError(f"task_specs.{self.name}.loss", f"{self.loss_name!r} is not a regression loss; "
                              f"choose one of: {', '.join(LOSSES)}")
        self.mean = self.option("mean", 0.0)
        self.std = self.option("std", 1.0)
        if not (math.isfinite(self.std) and self.std > 0):
            self.std = 1.0
        self.unit = ""

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, 1)

    def values(self, output: Tensor) -> Tensor:
        """The head's output in the label's units, ``(B,)``."""
        return output.reshape(-1).float() * self.std + self.mean

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        pred = output.reshape(-1).float()
        truth = (target.reshape(-1).float() - self.mean) / self.std
        if self.loss_name == "smooth_l1":
            return F.smooth_l1_loss(pred, truth)
        return F.l1_loss(pred, truth)

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        pred, truth = self.values(outputs).double(), targets.reshape(-1).double()
        if truth.numel() == 0:
            return {"mae": 0.0, "rmse": 0.0, "r2": 0.0}
        err = pred - truth
        return {"mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt()), "r2": r2_score(pred, truth)}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"value": float}]`` per image, in the label's units."""
        return [{"value": float(v)} for v in self.values(output.detach()).cpu()]


