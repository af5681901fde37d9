"""Cross-stitch networks: one backbone per task, mixed after every stage by learned
per-channel linear combinations (Misra, Shrivastava, Gupta and Hebert, CVPR 2016)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of, run_stages
from mtl_core.models.base import MultiTaskModel, head_kind, register_architecture, task_heads


class CrossStitch(nn.Module):
    """``x'_t = sum_s alpha[t, s, c] x_s``; starts near identity (0.9 self, 0.1 shared out)."""

    def __init__(self, tasks: int, channels: int) -> None:
        super().__init__()
        off = 0.1 / max(1, tasks - 1)
        alpha = torch.full((tasks, tasks, channels), off)
        alpha[torch.arange(tasks), torch.arange(tasks)] = 0.9 if tasks > 1 else 1.0
        self.alpha = nn.Parameter(alpha)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        stacked = torch.stack(xs, 1)  # (B, T, C, h, w)
        mixed = torch.einsum("tsc,bschw->btchw", self.alpha.to(stacked.dtype), stacked)
        return list(mixed.unbind(1))


@register_architecture("cross_stitch")
class CrossStitchNet(MultiTaskModel):
    citation = "Misra, Shrivastava, Gupta and Hebert, 'Cross-stitch Networks for Multi-task Learning', CVPR 2016."

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbones = nn.ModuleDict({t: backbone_of(cfg) for t in tasks})
        first = next(iter(self.backbones.values()))
        with torch.no_grad():
            shapes = []
            run_stages(first.stages(torch.zeros(1, 3, 64, 64)), lambda j, f: shapes.append(f.shape[1]) or f)
        self.stitches = nn.ModuleList(CrossStitch(len(tasks), c) for c in shapes)
        self.heads = task_heads(tasks, first, head_kind(cfg))

    def shared_parameters(self) -> list[nn.Parameter]:
        # the cross-stitch units are what every task's loss updates
        return list(self.stitches.parameters())

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        gens = [self.backbones[t].stages(images) for t in self.task_names]
        outs = [next(g) for g in gens]
        finals: list[Tensor | None] = [None] * len(gens)
        for stitch in self.stitches:
            outs = stitch(outs)
            nxt = []
            for i, (g, o) in enumerate(zip(gens, outs)):
                try:
                    nxt.append(g.send(o))
                except StopIteration as stop:
                    finals[i] = stop.value
                    nxt.append(stop.value)
            outs = nxt
        return {t: self.heads[t](f) for t, f in zip(self.task_names, finals)}, None
