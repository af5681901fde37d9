"""A task from one file, as a person adding their own would write it: the learning half only (the
test of the task protocol's promise; loaded with ``MTL_PLUGINS=tests/tasks/plugin_crowded.py``).

"Crowded scene": whether three or more objects are visible, learnt from the ``count`` label the
datasets already supply. Binary softmax cross-entropy on a pooled head. Its ``kind`` is
``classification``, so it is drawn, summarised and inspected as a class is, with no code of its own.
"""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.tasks.base import Task, register_task
from mtl_core.tasks.classification import as_batch, decode_classes, pooled_head, topk_accuracy

CROWDED_AT = 3


@register_task("crowded")
class Crowded(Task):
    kind = "classification"
    class_names = ("sparse", "crowded")
    primary = "accuracy"
    higher_is_better = True
    title = "Crowded scene"
    description = f"whether {CROWDED_AT} or more objects are visible"
    target_key = "count"

    def labels(self, target: Tensor) -> Tensor:
        return (target.reshape(-1).long() >= CROWDED_AT).long()  # (B,): 1 = crowded

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, 2)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(as_batch(output).float(), self.labels(target))

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        return {"accuracy": topk_accuracy(as_batch(outputs).float(), self.labels(targets), 1)}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        return decode_classes(output)
