"""Single-task baseline: one independent network per task, nothing shared. Trained on the same
backbone, data and budget, it is the reference for the multi-task score Δm (Maninis et al.,
CVPR 2019; Vandenhende et al., TPAMI 2021)."""
from __future__ import annotations

from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of
from mtl_core.models.base import MultiTaskModel, head_kind, register_architecture, task_head


@register_architecture("single_task")
class SingleTask(MultiTaskModel):
    citation = "Independent networks per task: the baseline of Maninis et al., CVPR 2019."

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbones = nn.ModuleDict({t: backbone_of(cfg) for t in tasks})
        self.heads = nn.ModuleDict({t: task_head(task, self.backbones[t].channels, self.backbones[t].stride, head_kind(cfg))
                                    for t, task in tasks.items()})

    def shared_parameters(self) -> list[nn.Parameter]:
        return []

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        return {t: self.heads[t](self.backbones[t](images)) for t in self.task_names}, None
