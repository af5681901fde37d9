"""PAD-Net (Xu, Ouyang, Wang and Sebe, "PAD-Net: Multi-Tasks Guided Prediction-and-Distillation
Network for Simultaneous Depth Estimation and Scene Parsing", CVPR 2018), built for dense
prediction: tasks exchange features before their heads.

A shared backbone, then per task an intermediate block giving its features ``F_t``, then the
multi-modal distillation module (the paper's attention-guided message passing): task ``t``
receives from every other task ``s`` its features transformed by a 3x3 convolution, gated per
pixel and channel by a sigmoid attention map that ``t`` computes from its own features:
``F'_t = F_t + sum_{s != t} sigmoid(A_ts(F_t)) * W_ts(F_s)``; the heads read ``F'_t``. (The
reimplementation of Vandenhende et al., TPAMI 2021, computes the map from ``F_s`` instead.)

Left out: the intermediate predictions and their deep supervision. The paper predicts each
(auxiliary) task from ``F_t`` and adds those predictions' losses; our model interface returns one
output per task, scored by that task's own loss, so a second, intermediate output would have no
loss to train it, and an unsupervised "prediction" is only more features. The distillation here
reads ``F_t`` directly, as the paper's reads the features behind those predictions.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.models.backbones import ResBlock, backbone_of
from mtl_core.models.base import MultiTaskModel, head_kind, register_architecture, task_heads


class Message(nn.Module):
    """What task ``s`` passes to task ``t``: ``sigmoid(A(F_t)) * W(F_s)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.transform = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, receiver: Tensor, source: Tensor) -> tuple[Tensor, Tensor]:
        gate = torch.sigmoid(self.attention(receiver))  # (B, C, h, w) in (0, 1)
        return gate * self.transform(source), gate


@register_architecture("pad_net")
class PADNet(MultiTaskModel):
    citation = ("Xu, Ouyang, Wang and Sebe, 'PAD-Net: Multi-Tasks Guided Prediction-and-Distillation Network for "
                "Simultaneous Depth Estimation and Scene Parsing', CVPR 2018.")

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbone = backbone_of(cfg)
        c = self.backbone.channels
        self.intermediate = nn.ModuleDict({t: ResBlock(c, c) for t in tasks})
        self.distill = nn.ModuleDict({t: nn.ModuleDict({s: Message(c) for s in tasks if s != t}) for t in tasks})
        self.heads = task_heads(tasks, self.backbone, head_kind(cfg))
        self.last_gates: dict[str, dict[str, Tensor]] = {}

    def shared_parameters(self) -> list[nn.Parameter]:
        # every task's loss reaches the backbone and, through the messages, every task's features
        return [p for p in (*self.backbone.parameters(), *self.intermediate.parameters()) if p.requires_grad]

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        shared = self.backbone(images)  # (B, C, H/s, W/s)
        feats = {t: self.intermediate[t](shared) for t in self.task_names}  # F_t, each (B, C, H/s, W/s)
        outputs = {}
        for t in self.task_names:
            refined, gates = feats[t], {}
            for s, message in self.distill[t].items():
                m, gate = message(feats[t], feats[s])
                refined = refined + m
                gates[s] = gate.detach().flatten(1).mean(1)  # (B,)
            self.last_gates[t] = gates
            outputs[t] = self.heads[t](refined)
        return outputs, None

    @torch.no_grad()
    def distillation_gates(self, images: Tensor) -> dict[str, dict[str, float]]:
        """How much of each other task's message each task lets through: the mean of its attention
        map, over pixels, channels and the batch: ``{receiver: {source: mean in (0, 1)}}``."""
        self.forward(images)
        return {t: {s: float(g.float().mean()) for s, g in gates.items()} for t, gates in self.last_gates.items()}
