"""One yes/no attribute per image (kind ``binary``): a face smiling, a scene indoors.

Each attribute is its own task, so a weighting method balances the attributes one by one, as
every CelebA table in the multi-task literature does (Sener and Koltun, "Multi-Task Learning as
Multi-Objective Optimization", NeurIPS 2018, section 6.2: 40 tasks). A single logit with the
sigmoid binary cross-entropy; its prediction has the ``classification`` kind's format
(``{"label", "score", "probs"}`` over ``[no, yes]``), so it is drawn and inspected as a class is.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import Task, register_kind
from mtl_core.tasks.classification import pooled_head

NO_YES = ("no", "yes")


def f1_score(pred: Tensor, truth: Tensor) -> float:
    """F1 of the positive class; 0.0 when there is neither a positive label nor a positive decision
    (scikit-learn's ``zero_division=0``)."""
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 2 * tp / denom if denom else 0.0


@register_kind("binary")
class Binary(Task):
    """A yes/no label (a target of 0 or 1); class 1 is "yes" (or the second of the spec's two
    class names). Metrics over the set: ``accuracy`` (primary), ``balanced_accuracy`` (the mean
    of the true-positive and true-negative rates: an attribute present in 5% of faces is not
    learnt by saying no to all) and ``f1`` of the positive class. All 0.0 on an empty set."""

    kind = "binary"
    primary = "accuracy"
    higher_is_better = True

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        if len(self.class_names) != 2:  # a binary task's classes are its own two, never the dataset's
            self.class_names = tuple(self.spec.classes) if len(self.spec.classes) == 2 else NO_YES
        self.num_classes = 2

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, 1)

    @staticmethod
    def _logit(output: Tensor) -> Tensor:
        return output.reshape(-1).float()  # (B,)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self._logit(output), target.reshape(-1).float())

    def random_labels(self, u: Tensor) -> Tensor:
        return (u >= 0.5).long()

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        pred, truth = self._logit(outputs) > 0, targets.reshape(-1) > 0.5  # (N,), (N,)
        if pred.numel() == 0:
            return {"accuracy": 0.0, "balanced_accuracy": 0.0, "f1": 0.0}
        rates = [float((pred[truth == c] == c).float().mean()) for c in (True, False) if (truth == c).any()]
        return {"accuracy": float((pred == truth).float().mean()), "balanced_accuracy": sum(rates) / len(rates),
                "f1": f1_score(pred, truth)}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"label": 0 or 1, "score": its probability, "probs": [p(no), p(yes)]}]`` per image."""
        p = torch.sigmoid(self._logit(output.detach())).cpu()  # (B,)
        return [{"label": int(v >= 0.5), "score": float(max(v, 1 - v)), "probs": [float(1 - v), float(v)]} for v in p]
