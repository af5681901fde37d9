"""Object counting as classification over ``0 .. max_objects``.

Treating a small count range as classes (softmax cross-entropy) rather than regressing a
number follows the "counting as classification" baselines of Chattopadhyay et al., "Counting
Everyday Objects in Everyday Scenes" (CVPR 2017); the mean absolute error is reported beside
accuracy because being off by one is better than being off by three.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import Task, register_kind, register_task
from mtl_core.tasks.classification import as_batch, decode_classes, pooled_head, topk_accuracy


@register_task("count")
@register_kind("count")
class Count(Task):
    """How many objects are visible, ``0 .. max_objects``; metrics ``accuracy`` (primary) and
    ``mae`` (mean absolute error of the most likely count, in objects). Counts above
    ``max_objects`` in a target are treated as ``max_objects``. Both metrics are 0.0 on an
    empty set."""

    kind = "count"
    primary = "accuracy"
    higher_is_better = True
    title = "Object count"
    description = "how many objects are visible"

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        self.max_count = max(int(self.option("max_count", info.max_objects)), 1)

    @property
    def num_outputs(self) -> int:
        return self.max_count + 1

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, self.num_outputs)

    def _counts(self, target: Tensor) -> Tensor:
        return target.reshape(-1).long().clamp(0, self.max_count)  # (B,)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(as_batch(output).float(), self._counts(target))

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        logits, counts = as_batch(outputs).float(), self._counts(targets)  # (N, K+1), (N,)
        if logits.shape[0] == 0:
            return {"accuracy": 0.0, "mae": 0.0}
        error = (logits.argmax(dim=1) - counts).abs().float()
        return {"accuracy": topk_accuracy(logits, counts, 1), "mae": float(error.mean())}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"count": int, "score": its probability, "probs": [max_objects + 1 floats]}]`` per image."""
        return decode_classes(output, "count")
