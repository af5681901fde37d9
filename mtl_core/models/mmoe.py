"""Multi-gate mixture-of-experts (Ma et al., 'Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts', KDD 2018), for images: a few expert backbones
shared by all tasks, and per task a gate that mixes the experts' feature maps per image."""
from __future__ import annotations

from torch import nn

from mtl_core.models.backbones import backbone_of
from mtl_core.models.base import head_kind, register_architecture, task_heads
from mtl_core.models.gates import GATE_INPUT, GatedModel, expert_names

NUM_EXPERTS = 3


@register_architecture("mmoe")
class MMoE(GatedModel):
    citation = "Ma, Zhao, Yi, Chen, Hong and Chi, 'Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts', KDD 2018."

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.experts = nn.ModuleList(backbone_of(cfg) for _ in range(NUM_EXPERTS))
        # gates see a small summary of the image (a 4x4 thumbnail), as MMoE's gates see the input
        self.gates = nn.ModuleDict({t: nn.Linear(GATE_INPUT, NUM_EXPERTS) for t in tasks})
        self.heads = task_heads(tasks, self.experts[0], head_kind(cfg))
        self.expert_names = {t: expert_names("expert", NUM_EXPERTS) for t in tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.experts.parameters() if p.requires_grad]
