"""What the gated mixture-of-experts architectures share (MMoE, CGC, PLE, DSelect-k): the gates'
input, mixing the experts' feature maps by per-image weights, and the batch-mean gate values the
Predict page shows.

The gates see a 4x4 thumbnail of the image, as MMoE's gates see the input: a few numbers per
image, so a gate costs nothing next to its experts and stays comparable across backbones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_core.models.base import MultiTaskModel

THUMB = 4
GATE_INPUT = 3 * THUMB * THUMB


def thumbnail(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 48)``: the image averaged down to 4x4, what every gate sees."""
    return F.adaptive_avg_pool2d(images, THUMB).flatten(1)


def mix(weights: Tensor, feats: list[Tensor]) -> Tensor:
    """Per-image weighted sum of expert feature maps: ``(B, E)`` and E maps ``(B, C, h, w)`` -> ``(B, C, h, w)``."""
    stacked = torch.stack(feats, 1)  # (B, E, C, h, w)
    return (weights[:, :, None, None, None].to(stacked.dtype) * stacked).sum(1)


def expert_names(prefix: str, n: int) -> list[str]:
    """``shared``, or ``shared 1``, ``shared 2`` ... when a group has several experts."""
    return [prefix] if n == 1 else [f"{prefix} {i + 1}" for i in range(n)]


class GatedModel(MultiTaskModel):
    """A model whose tasks each mix experts by a gate. Subclasses fill ``expert_names[t]`` (the
    experts task ``t``'s gate weighs, in order) and, in every forward, ``last_gates[t]`` ``(B, E)``.

    The forward here is MMoE's shape, every task mixing the same ``experts`` (an ``nn.ModuleList``)
    by ``expert_weights``; a model whose tasks see different experts (CGC, PLE) writes its own."""

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.expert_names: dict[str, list[str]] = {}
        self.last_gates: dict[str, Tensor] = {}

    def expert_weights(self, task: str, thumb: Tensor) -> Tensor:
        """``(B, 48)`` thumbnails -> ``task``'s weights over its experts ``(B, E)``: a softmax gate."""
        return torch.softmax(self.gates[task](thumb), dim=1)

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        feats = [e(images) for e in self.experts]  # E x (B, C, h, w)
        thumb = thumbnail(images)  # (B, 48)
        outputs = {}
        for t in self.task_names:
            g = self.expert_weights(t, thumb)  # (B, E)
            self.last_gates[t] = g.detach()
            outputs[t] = self.heads[t](mix(g, feats))  # (B, C, h, w) into the head
        return outputs, None

    @torch.no_grad()
    def gate_values(self, images: Tensor) -> dict[str, dict[str, float]]:
        """Each task's gate weights averaged over the batch: ``{task: {expert: weight}}``, summing to 1 per task."""
        self.forward(images)
        return {t: dict(zip(self.expert_names[t], g.float().mean(0).tolist(), strict=True))
                for t, g in self.last_gates.items()}
