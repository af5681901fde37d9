"""Customized Gate Control (CGC), the single-level form of PLE (Tang, Liu, Zhao and Gong,
"Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
Recommendations", RecSys 2020).

MMoE with the experts split in two: some shared by every task, and some owned by each task. Task
``t``'s gate mixes only the shared experts and ``t``'s own, so a task's own experts are free of the
other tasks' gradients and the shared ones carry what the tasks have in common:
``y_t = head_t(sum_e g_t(x)_e E_e(x))`` over ``e`` in shared + own(``t``).

For images, as LibMTL adapts it: every expert is a whole backbone, and the gates see a 4x4
thumbnail of the image (see ``gates.py``). One shared expert and one per task by default (the
demo trains on two CPU cores): ``1 + T`` backbones.
"""
from __future__ import annotations

from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of
from mtl_core.models.base import head_kind, register_architecture, task_heads
from mtl_core.models.gates import GATE_INPUT, GatedModel, expert_names, mix, thumbnail

NUM_SHARED = 1
NUM_OWN = 1  # experts per task


@register_architecture("cgc")
class CGC(GatedModel):
    citation = ("Tang, Liu, Zhao and Gong, 'Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) "
                "Model for Personalized Recommendations', RecSys 2020 (its Customized Gate Control).")

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)

        def backbone() -> nn.Module:
            return backbone_of(cfg)

        self.shared = nn.ModuleList(backbone() for _ in range(NUM_SHARED))
        self.own = nn.ModuleDict({t: nn.ModuleList(backbone() for _ in range(NUM_OWN)) for t in tasks})
        self.gates = nn.ModuleDict({t: nn.Linear(GATE_INPUT, NUM_SHARED + NUM_OWN) for t in tasks})
        self.heads = task_heads(tasks, self.shared[0], head_kind(cfg))
        self.expert_names = {t: expert_names("shared", NUM_SHARED) + expert_names(t, NUM_OWN) for t in tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        # a task's own experts feed only its gate: the shared experts are all every task updates
        return [p for p in self.shared.parameters() if p.requires_grad]

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        shared = [e(images) for e in self.shared]  # S x (B, C, h, w)
        thumb = thumbnail(images)  # (B, 48)
        outputs = {}
        for t in self.task_names:
            g = self.expert_weights(t, thumb)  # (B, S + O)
            self.last_gates[t] = g.detach()
            outputs[t] = self.heads[t](mix(g, shared + [e(images) for e in self.own[t]]))
        return outputs, None
