"""MTAN: a shared backbone plus task-specific soft-attention modules at every stage
(Liu, Johns and Davison, 'End-to-End Multi-Task Learning with Attention', CVPR 2019).

Each task's attention module at stage j sees the shared features there and the task's own
attended features from stage j-1, and outputs a sigmoid mask that selects channels and
pixels of the shared features: ``a_t^j = sigmoid(g([f^j, p(a_t^{j-1} * f^{j-1})])) * f^j``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of, run_stages
from mtl_core.models.base import MultiTaskModel, head_kind, register_architecture, task_heads


class Attention(nn.Module):
    def __init__(self, channels: int, prev_channels: int) -> None:
        super().__init__()
        self.prev = nn.Conv2d(prev_channels, channels, 1) if prev_channels else None
        cin = channels * (2 if prev_channels else 1)
        self.gate = nn.Sequential(nn.Conv2d(cin, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.Sigmoid())

    def forward(self, shared: Tensor, prev: Tensor | None) -> tuple[Tensor, Tensor]:
        x = shared
        if self.prev is not None and prev is not None:
            p = F.interpolate(self.prev(prev), size=shared.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([shared, p], 1)  # (B, 2C, h, w)
        mask = self.gate(x)  # (B, C, h, w) in (0, 1)
        return mask * shared, mask


@register_architecture("mtan")
class MTAN(MultiTaskModel):
    citation = "Liu, Johns and Davison, 'End-to-End Multi-Task Learning with Attention', CVPR 2019."

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbone = backbone_of(cfg)
        with torch.no_grad():
            shapes = []
            run_stages(self.backbone.stages(torch.zeros(1, 3, 64, 64)), lambda j, f: shapes.append(f.shape[1]) or f)
        self.attention = nn.ModuleDict({
            t: nn.ModuleList(Attention(c, shapes[j - 1] if j else 0) for j, c in enumerate(shapes)) for t in tasks})
        self.heads = task_heads(tasks, self.backbone, head_kind(cfg))
        self.last_masks: dict[str, Tensor] = {}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        stages: list[Tensor] = []
        run_stages(self.backbone.stages(images), lambda j, f: stages.append(f) or f)
        outputs = {}
        for t in self.task_names:
            prev = None
            for att, shared in zip(self.attention[t], stages):
                prev, mask = att(shared, prev)
            self.last_masks[t] = mask.detach()
            outputs[t] = self.heads[t](prev)
        return outputs, None

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Each task's last-stage attention averaged over channels: ``{task: (B, h, w)}`` in [0, 1]."""
        self.forward(images)
        return {t: m.mean(1) for t, m in self.last_masks.items()}
