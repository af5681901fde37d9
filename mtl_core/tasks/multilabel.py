"""Multi-label classification: which classes are present in the image (any number of them).

One independent sigmoid per class with binary cross-entropy (the standard multi-label set-up,
e.g. Wang et al., "CNN-RNN: A Unified Framework for Multi-label Image Classification", CVPR
2016, and its baselines); mean average precision over classes as in the PASCAL VOC
classification challenge (Everingham et al., IJCV 2010), with scikit-learn's non-interpolated
``average_precision_score`` definition.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import Task, register_kind, register_task
from mtl_core.tasks.classification import as_batch, pooled_head

DECISION_THRESHOLD = 0.5  # probability above which a class counts as present (decode, exact_match, f1)


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Non-interpolated AP of one class: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score
    thresholds, highest first (tied scores form one threshold). NaN when there is no positive."""
    positives = float(labels.sum())
    if positives == 0:
        return float("nan")
    order = scores.argsort(descending=True, stable=True)
    s, y = scores[order], labels[order].double()  # (N,)
    tp, fp = y.cumsum(0), (1 - y).cumsum(0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last row of each run of equal scores is a threshold
    tp, fp = tp[last], fp[last]
    precision, recall = tp / (tp + fp), tp / positives
    previous = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous) * precision).sum())


@register_task("multilabel")
@register_kind("multilabel")
class MultiLabel(Task):
    """Presence of each of ``K`` classes; metrics over the whole set:

    - ``map`` (primary): mean over classes of :func:`average_precision`, over the classes with at
      least one positive in the set (AP is undefined without one);
    - ``exact_match``: fraction of images whose every class decision (probability >= 0.5) is right;
    - ``f1``: micro-averaged F1 of those decisions over all (image, class) pairs.

    All are 0.0 on an empty set; ``map`` is 0.0 when no class has a positive, and ``f1`` is 0.0
    when there is no positive label and no positive decision (scikit-learn's default).
    """

    kind = "multilabel"
    primary = "map"
    higher_is_better = True
    title = "Multi-label"
    description = "which classes appear anywhere in the image"

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        self.num_classes = max(len(self.class_names), 1)

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, self.num_classes)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        logits = as_batch(output).float()  # (B, K)
        return F.binary_cross_entropy_with_logits(logits, target.reshape(logits.shape).float())

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        logits = as_batch(outputs).float()  # (N, K)
        truth = targets.reshape(logits.shape) > 0.5  # (N, K)
        if logits.shape[0] == 0:
            return {"map": 0.0, "exact_match": 0.0, "f1": 0.0}
        aps = torch.tensor([average_precision(logits[:, k], truth[:, k]) for k in range(logits.shape[1])])
        aps = aps[~aps.isnan()]
        decided = logits.sigmoid() >= DECISION_THRESHOLD  # (N, K)
        tp = float((decided & truth).sum())
        wrong = float((decided ^ truth).sum())  # false positives + false negatives
        return {
            "map": float(aps.mean()) if len(aps) else 0.0,
            "exact_match": float((decided == truth).all(dim=1).float().mean()),
            "f1": 2 * tp / (2 * tp + wrong) if tp + wrong > 0 else 0.0,
        }

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"labels": [present classes, most likely first], "probs": [K floats]}]`` per image."""
        probs = as_batch(output).detach().float().sigmoid().cpu()  # (B, K)
        preds = []
        for p in probs:
            order = p.argsort(descending=True, stable=True).tolist()
            preds.append({"labels": [k for k in order if p[k] >= DECISION_THRESHOLD], "probs": p.tolist()})
        return preds
