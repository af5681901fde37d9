"""Progressive Layered Extraction (PLE; Tang, Liu, Zhao and Gong, "Progressive Layered Extraction
(PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

CGC levels stacked (see ``cgc.py``). At an inner level each task's gate mixes the shared experts
and its own, as in CGC, and a shared gate mixes every expert of the level (shared and all tasks');
at the next level the shared experts read the shared gate's mixture and task ``t``'s experts read
``t``'s. The last level has task gates only, and they feed the heads.

For images: experts are backbones, and a level is a run of a backbone's stages (its ``stages()``
generator, driven as cross-stitch drives it). Two levels, split after the middle stage
(``(n - 1) // 2`` of ``n``): for ``small_cnn`` level 1 is the encoder down to the stride-8
bottleneck and level 2 the decoder back up; for the torchvision trunks the first stage(s) and the
rest. Mixing happens only at the split: stages inside a level feed their own expert, and so do a
backbone's skip connections (``small_cnn``'s decoder reads its own encoder's features). The
stages are counted from the backbone, so any backbone with two or more stages works.

Departures, for images: every gate sees a 4x4 thumbnail of the image (``gates.py``), where the
paper's inner gates see the previous level's output; LibMTL's PLE, which applies every task's
gates at each ResNet layer, has no shared gate and runs the shared experts once per task; here the
shared gate is the paper's. ``gate_values`` reports the last level's task gates (what each head
sees), as MTAN's maps show its last stage.
"""
from __future__ import annotations

from collections.abc import Generator

import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError
from mtl_core.models.backbones import backbone_of, build_backbone, run_stages
from mtl_core.models.base import head_kind, register_architecture, task_heads
from mtl_core.models.gates import GATE_INPUT, GatedModel, expert_names, mix, thumbnail

NUM_SHARED = 1
NUM_OWN = 1  # experts per task


def send_all(gens: list[Generator], values: list[Tensor]) -> tuple[list[Tensor], bool]:
    """Send each generator its value; ``(next outputs, finished)``, the return values when finished."""
    out, done = [], False
    for g, v in zip(gens, values, strict=True):
        try:
            out.append(g.send(v))
        except StopIteration as stop:
            out.append(stop.value)
            done = True
    return out, done


def level_split(backbone: nn.Module) -> tuple[int, set[str]]:
    """The stage after which level 1 ends, and the names of the parameters level 1 uses (found on
    ``backbone``, a throwaway copy, by which parameters the split stage's output depends on)."""
    outs: list[Tensor] = []
    backbone.eval()
    with torch.enable_grad():
        run_stages(backbone.stages(torch.zeros(1, 3, 64, 64)), lambda j, f: outs.append(f) or f)
    if len(outs) < 2:
        raise ConfigError("model.backbone", f"ple needs a backbone with two or more stages to make two levels; "
                          f"this one has {len(outs)}: use small_cnn or resnet18, or the cgc architecture")
    split = (len(outs) - 1) // 2
    named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(outs[split].sum(), [p for _, p in named], allow_unused=True)
    return split, {n for (n, _), g in zip(named, grads, strict=True) if g is not None}


@register_architecture("ple")
class PLE(GatedModel):
    citation = ("Tang, Liu, Zhao and Gong, 'Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) "
                "Model for Personalized Recommendations', RecSys 2020.")

    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)

        def backbone() -> nn.Module:
            return backbone_of(cfg)

        self.split, self._level1 = level_split(build_backbone(cfg.backbone, cfg.width))  # a throwaway: no weights
        self.shared = nn.ModuleList(backbone() for _ in range(NUM_SHARED))
        self.own = nn.ModuleDict({t: nn.ModuleList(backbone() for _ in range(NUM_OWN)) for t in tasks})
        n_task = NUM_SHARED + NUM_OWN
        self.inner_gates = nn.ModuleDict({t: nn.Linear(GATE_INPUT, n_task) for t in tasks})
        self.shared_gate = nn.Linear(GATE_INPUT, NUM_SHARED + NUM_OWN * len(tasks))
        self.gates = nn.ModuleDict({t: nn.Linear(GATE_INPUT, n_task) for t in tasks})  # the last level's
        self.heads = task_heads(tasks, self.shared[0], head_kind(cfg))
        self.expert_names = {t: expert_names("shared", NUM_SHARED) + expert_names(t, NUM_OWN) for t in tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        # every task reaches the shared experts, the shared gate, and through that gate the first
        # level of every task's own experts
        own_level1 = [p for experts in self.own.values() for e in experts
                      for n, p in e.named_parameters() if n in self._level1]
        params = [*self.shared.parameters(), *self.shared_gate.parameters(), *own_level1]
        return [p for p in params if p.requires_grad]

    def _inner_level(self, thumb: Tensor, shared: list[Tensor], own: dict[str, list[Tensor]]):
        """The inner level's gates: what the next level's shared experts and each task's experts read."""
        every = shared + [f for t in self.task_names for f in own[t]]  # S + T*O maps (B, C_j, h_j, w_j)
        g_shared = torch.softmax(self.shared_gate(thumb), dim=1)  # (B, S + T*O)
        to_own = {t: [mix(torch.softmax(self.inner_gates[t](thumb), dim=1), shared + own[t])] * NUM_OWN
                  for t in self.task_names}
        return [mix(g_shared, every)] * NUM_SHARED, to_own

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        thumb = thumbnail(images)  # (B, 48)
        shared_gens = [e.stages(images) for e in self.shared]
        own_gens = {t: [e.stages(images) for e in self.own[t]] for t in self.task_names}
        shared = [next(g) for g in shared_gens]  # S x (B, C_j, h_j, w_j)
        own = {t: [next(g) for g in gens] for t, gens in own_gens.items()}
        j, done = 0, False
        while not done:
            if j == self.split:
                shared, own = self._inner_level(thumb, shared, own)
            shared, done = send_all(shared_gens, shared)
            for t in self.task_names:
                own[t], _ = send_all(own_gens[t], own[t])
            j += 1
        outputs = {}
        for t in self.task_names:
            g = self.expert_weights(t, thumb)  # (B, S + O)
            self.last_gates[t] = g.detach()
            outputs[t] = self.heads[t](mix(g, shared + own[t]))  # (B, C, h, w) into the head
        return outputs, None
