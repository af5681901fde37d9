"""SegNet-MTAN: MTAN's attention on SegNet, the network of its paper's NYUv2 and CityScapes
experiments (Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019;
the authors' ``im2im_pred/model_segnet_mtan.py``, rewritten here).

One shared SegNet (``segnet.py``) computes its features once. Each task has its own attention
module at each of the ten blocks, and builds its own features alongside the shared ones:

- encoder block ``j``: a mask ``a = g_j([u_j, p_{j-1}])`` from the block's first convolution's output
  ``u_j`` and the task's features from the block before (``u_0`` alone at the first), applied to
  the block's output: ``a * f_j``; a 3x3 convolution block shared by the tasks and a 2x2 max-pool
  give ``p_j`` for the next block;
- decoder block ``i`` (deepest first): the task's features are upsampled (bilinear) and passed
  through a shared 3x3 convolution block; the mask comes from them and the block's unpooled input,
  and is applied to the block's output.

``g`` is MTAN's ``att_layer``: 1x1 convolution, BatchNorm, ReLU, 1x1 convolution, BatchNorm,
sigmoid. The task's features after the last decoder block (``width`` channels at stride 1: 64 at
the paper's width 64) go into the task's head (``model.head``). MTAN's prediction layers (a 3x3 and
a 1x1 convolution) are each task's own head here.

``model.width`` scales every filter as for the ``segnet`` backbone (64 is the paper's; the default
16 trains on a CPU). ``model.backbone`` is not used: this architecture is its SegNet. For the
paper's comparison with SegNet alone, run the single-task baselines (``hard_sharing``) with
``model.backbone = "segnet"`` and the same width.

``shared_parameters()`` is what every task's loss reaches: the SegNet and the attention branch's
shared 3x3 blocks (one set for all tasks in MTAN's code), not the per-task attention masks nor the
heads. The ports the gradient-method papers use (e.g. Nash-MTL's ``SegNetMtan``) also count the
per-task masks as shared, so each task's gradient there is zero on the other tasks' masks.

Departures: sizes that are not multiples of 32 work (pooling floors, unpooling and upsampling go
back to each block's own size, where MTAN's ``scale_factor=2`` needs multiples of 32); the paper's
weighting (its DWA) is a weighting method here, not part of the model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.models.backbones import build_backbone, run_stages
from mtl_core.models.base import MultiTaskModel, head_kind, register_architecture, task_heads
from mtl_core.models.segnet import Trace, conv_layer, filters, init_like_mtan


def att_layer(cin: int, cout: int) -> nn.Sequential:
    """MTAN's ``att_layer``: a per-pixel, per-channel mask in (0, 1) from ``cin`` channels."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout), nn.Sigmoid())


@register_architecture("segnet_mtan")
class SegNetMTAN(MultiTaskModel):
    citation = ("Liu, Johns and Davison, 'End-to-End Multi-Task Learning with Attention', CVPR 2019 (SegNet-MTAN; "
                "model.backbone is not used, model.width 64 is the paper's).")
    uses_backbone = "segnet"  # whatever model.backbone says


    def __init__(self, tasks, cfg) -> None:
        super().__init__(tasks, cfg)
        self.backbone = build_backbone(self.uses_backbone, cfg.width, cfg.pretrained, getattr(cfg, "weights_path", ""))
        f = filters(cfg.width)
        dec_out = [*f[3::-1], f[0]]  # each decoder block's output channels, deepest first: f3, f2, f1, f0, f0
        # the attention branch's 3x3 blocks, shared by the tasks: encoder f_j -> f_(j+1); decoder, deepest first
        self.enc_conv = nn.ModuleList(conv_layer(cin, cout) for cin, cout in zip(f, [*f[1:], f[4]]))
        self.dec_conv = nn.ModuleList(conv_layer(cin, cout) for cin, cout in zip([f[4], *dec_out[:-1]], [f[4], *dec_out[1:]]))
        # per task: masks from [block input features, the task's features] (the first from the block's alone)
        enc_in = [f[0]] + [2 * c for c in f[1:]]
        dec_in = [u + a for u, a in zip(f[::-1], [f[4], *dec_out[1:]])]  # unpooled input + the shared block's output
        self.enc_att = nn.ModuleDict({t: nn.ModuleList(att_layer(c, o) for c, o in zip(enc_in, f)) for t in tasks})
        self.dec_att = nn.ModuleDict({t: nn.ModuleList(att_layer(c, o) for c, o in zip(dec_in, dec_out)) for t in tasks})
        init_like_mtan(self.enc_conv), init_like_mtan(self.dec_conv), init_like_mtan(self.enc_att), init_like_mtan(self.dec_att)
        self.heads = task_heads(tasks, self.backbone, head_kind(cfg))
        self.last_masks: dict[str, Tensor] = {}

    def shared_parameters(self) -> list[nn.Parameter]:
        params = [*self.backbone.parameters(), *self.enc_conv.parameters(), *self.dec_conv.parameters()]
        return [p for p in params if p.requires_grad]

    def attend(self, t: str, s: Trace) -> tuple[Tensor, Tensor]:
        """Task ``t``'s features from the shared SegNet's trace ``s`` and its last mask."""
        p = None
        for j, att in enumerate(self.enc_att[t]):
            mask = att(s.enc_first[j] if p is None else torch.cat([s.enc_first[j], p], 1))  # (B, f_j, h_j, w_j)
            p = F.max_pool2d(self.enc_conv[j](mask * s.enc_out[j]), 2, 2)  # (B, f_(j+1), h_j / 2, w_j / 2)
        for i, att in enumerate(self.dec_att[t]):
            up = F.interpolate(p, size=s.unpooled[i].shape[-2:], mode="bilinear", align_corners=True)
            mask = att(torch.cat([s.unpooled[i], self.dec_conv[i](up)], 1))  # (B, c_i, h_i, w_i)
            p = mask * s.dec_out[i]
        return p, mask  # (B, f_0, H, W): the task's features at stride 1

    def forward_train(self, images: Tensor, rep_grad: bool = False):
        if rep_grad:
            self._no_rep()
        s = Trace([], [], [], [])
        run_stages(self.backbone.stages(images, s))  # the shared SegNet, once, through its stages (as tools that hook them expect)
        outputs = {}
        for t in self.task_names:
            features, mask = self.attend(t, s)
            self.last_masks[t] = mask.detach()
            outputs[t] = self.heads[t](features)
        return outputs, None

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Each task's last decoder mask averaged over channels: ``{task: (B, H, W)}`` in [0, 1]."""
        self.forward(images)
        return {t: m.mean(1) for t, m in self.last_masks.items()}
