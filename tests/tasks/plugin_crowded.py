"""A task from one file, as a person adding their own would write it (the test of the task
protocol's promise; loaded with ``MTL_PLUGINS=tests/tasks/plugin_crowded.py``).

"Crowded scene": whether three or more objects are visible, learnt from the ``count`` label the
datasets already supply. Binary softmax cross-entropy on a pooled head.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.tasks.base import Task, register_task
from mtl_core.tasks.classification import as_batch, pooled_head, topk_accuracy
from mtl_core.tasks.drawing import label_text

CROWDED_AT = 3
COLOURS = {False: (46, 139, 87), True: (178, 34, 34)}


@register_task("crowded")
class Crowded(Task):
    primary = "accuracy"
    higher_is_better = True
    title = "Crowded scene"
    description = f"whether {CROWDED_AT} or more objects are visible"
    target_key = "count"
    draw_order = 60
    fusion = "softmax"

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return pooled_head(channels, 2)

    def _labels(self, target: Tensor) -> Tensor:
        return (target.reshape(-1).long() >= CROWDED_AT).long()  # (B,)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(as_batch(output).float(), self._labels(target))

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        return {"accuracy": topk_accuracy(as_batch(outputs).float(), self._labels(targets), 1)}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        probs = as_batch(output).detach().float().softmax(dim=1).cpu()  # (B, 2)
        return [{"crowded": bool(p[1] >= 0.5), "score": float(p.max())} for p in probs]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        crowded = bool(prediction["crowded"])
        return label_text(image, "crowded" if crowded else "sparse", COLOURS[crowded], corner="bottom-left")

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        return {"crowded": int(torch.as_tensor(target).reshape(-1)[0]) >= CROWDED_AT, "score": 1.0}

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        return f"{'crowded' if prediction['crowded'] else 'sparse'} ({prediction['score']:.0%})"
