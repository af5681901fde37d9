"""DSelect-k (Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong and Chi, "DSelect-k:
Differentiable Selection in the Mixture of Experts with Applications to Multi-Task Learning",
NeurIPS 2021): MMoE whose gates learn to pick at most ``k`` experts per image.

Each task has ``k`` selectors. Selector ``j`` holds ``m = log2(E)`` logits ``z_j``; the
smooth-step function ``S`` (0 below ``-gamma/2``, 1 above ``gamma/2``, a cubic between) turns them
into soft bits, and expert ``i`` (binary code ``b(i)``) gets ``r_j(i) = prod_l (S(z_jl) if
b_l(i) else 1 - S(z_jl))``, a distribution over the experts that becomes one-hot once every
``S(z_jl)`` reaches 0 or 1. The task's expert weights are ``sum_j softmax(w)_j r_j``: at most
``k`` nonzero, summing to 1. Per image ("per-example gating"), ``z`` and ``w`` are linear in the
gate's input, here a 4x4 thumbnail (``gates.py``), initialised as LibMTL and the authors' code
do (``z`` within ``gamma/100`` of 0, ``w`` within 0.05).

Left out: the paper's entropy regulariser on ``r_j``, which pushes the selectors to binary
sooner. It is a loss of the architecture's own, and our model interface has no place for one: the
loss is the tasks' losses, which the weighting method combines (LibMTL calls ``backward`` inside
``forward`` for it, around the weighting method, the gradient statistics and the loss scale). The
selectors still saturate as training pushes ``|z|`` past ``gamma/2``, more slowly. So that no
penalty is needed either for codes without an expert, ``E`` is a power of two.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mtl_core.models.backbones import backbone_of
from mtl_core.models.base import head_kind, register_architecture, task_heads
from mtl_core.models.gates import GATE_INPUT, GatedModel, expert_names

NUM_EXPERTS = 4  # a power of two: every binary code is an expert
K = 2  # selectors per task: at most K experts per image once they are binary
GAMMA = 1.0  # width of the smooth step's cubic part


def smooth_step(t: Tensor, gamma: float = GAMMA) -> Tensor:
    """0 for ``t <= -gamma/2``, 1 for ``t >= gamma/2``, ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2`` between."""
    cubic = -2 / gamma ** 3 * t ** 3 + 3 / (2 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


@register_architecture("dselect_k")
class DSelectK(GatedModel):
    citation = ("Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong and Chi, 'DSelect-k: Differentiable "
                "Selection in the Mixture of Experts with Applications to Multi-Task Learning', NeurIPS 2021.")

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.bits = max(1, math.ceil(math.log2(NUM_EXPERTS)))
        self.experts = nn.ModuleList(backbone_of(cfg) for _ in range(NUM_EXPERTS))
        self.z_logits = nn.ModuleDict({t: nn.Linear(GATE_INPUT, K * self.bits) for t in tasks})
        self.w_logits = nn.ModuleDict({t: nn.Linear(GATE_INPUT, K) for t in tasks})
        # initialised like every module's weights (the builder seeds that from the run's seed)
        for p in self.z_logits.parameters():
            nn.init.uniform_(p, -GAMMA / 100, GAMMA / 100)
        for p in self.w_logits.parameters():
            nn.init.uniform_(p, -0.05, 0.05)
        codes = [[(i >> (self.bits - 1 - b)) & 1 for b in range(self.bits)] for i in range(NUM_EXPERTS)]
        self.register_buffer("codes", torch.tensor(codes, dtype=torch.bool), persistent=False)  # (E, m)
        self.heads = task_heads(tasks, self.experts[0], head_kind(cfg))
        self.expert_names = {t: expert_names("expert", NUM_EXPERTS) for t in tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.experts.parameters() if p.requires_grad]

    def expert_weights(self, task: str, thumb: Tensor) -> Tensor:
        """``(B, 48)`` -> task's weights over the experts ``(B, E)``: at most K nonzero once the selectors saturate."""
        z = self.z_logits[task](thumb).view(-1, K, 1, self.bits)  # (B, K, 1, m)
        s = smooth_step(z.float())  # soft bits in [0, 1]
        r = torch.where(self.codes, s, 1 - s).prod(-1)  # (B, K, E): each selector's distribution
        alpha = torch.softmax(self.w_logits[task](thumb).float(), dim=1)  # (B, K)
        return torch.einsum("bk,bke->be", alpha, r)
