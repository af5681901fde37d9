"""The task protocol: everything the engine, the metrics and the overlays need from one task.

Adding a task means adding one file here with a subclass registered by
``@register_task("name")`` and importing it in ``tasks/__init__.py``; nothing else.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mtl_core.data.base import DatasetInfo
from mtl_core.registry import Registry

TASKS: Registry[type[Task]] = Registry("task")
register_task = TASKS.register


class Task:
    """One task on shared features.

    Subclasses set ``primary`` (the key of the primary metric) and ``higher_is_better``
    (its direction; needed for the multi-task score Δm) and implement the methods below.
    ``output`` is whatever the head returns for a batch (a tensor, or a dict of tensors with
    the batch dimension first); ``target`` is the batch's entry for this task (see
    :mod:`mtl_core.data.base`).
    """

    name: str = ""
    primary: str = ""
    higher_is_better: bool = True
    title: str = ""  # human-readable, for the dashboard

    def __init__(self, info: DatasetInfo) -> None:
        self.info = info

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        """The task head: shared features ``(B, channels, h, w)`` -> this task's output.
        ``stride`` is the features' stride in image pixels, for a head that picks its own grid."""
        raise NotImplementedError

    def loss(self, output: Any, target: Any) -> Tensor:
        """A scalar loss for one batch."""
        raise NotImplementedError

    def metrics(self, outputs: Any, targets: Any) -> dict[str, float]:
        """Metrics over a whole evaluation set (outputs and targets concatenated over batches)."""
        raise NotImplementedError

    def decode(self, output: Any, image_size: tuple[int, int]) -> list[dict[str, Any]]:
        """One prediction per image, in the coordinates of an image of ``image_size = (H, W)``."""
        raise NotImplementedError

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """Overlay one prediction (or a ground truth in the same format) on ``image``,
        a uint8 ``(3, H, W)`` tensor; returns a new uint8 ``(3, H, W)`` tensor."""
        raise NotImplementedError

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """One sample's ground truth in :meth:`decode`'s format, so :meth:`draw` can show it."""
        raise NotImplementedError
