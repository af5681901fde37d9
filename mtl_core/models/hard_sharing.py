"""Hard parameter sharing (Caruana, 1997): one shared backbone, one head per task."""
from __future__ import annotations

from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of
from mtl_core.models.base import MultiTaskModel, SharedRep, head_kind, register_architecture, task_heads


@register_architecture("hard_sharing")
class HardSharing(MultiTaskModel):
    supports_rep = True
    citation = "Caruana, 'Multitask Learning', Machine Learning 28 (1997)."

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbone = backbone_of(cfg)
        self.heads = task_heads(tasks, self.backbone, head_kind(cfg))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        features = self.backbone(images)  # (B, C, H/s, W/s)
        if not rep_grad:
            return {t: self.heads[t](features) for t in self.task_names}, None
        rep = SharedRep(features, self.task_names)
        return {t: self.heads[t](rep.per_task[t]) for t in self.task_names}, rep
