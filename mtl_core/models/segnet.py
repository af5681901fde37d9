"""SegNet as MTAN's paper builds it (Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep
Convolutional Encoder-Decoder Architecture for Image Segmentation", TPAMI 2017; Liu, Johns and
Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019, its ``model_segnet_*.py``).

Five encoder blocks with VGG-16's thirteen 3x3 convolutions (2, 2, 3, 3, 3), each block followed
by a 2x2 max-pool that remembers where each maximum was; five decoder blocks, deepest first, each
preceded by a max-unpool to those places (SegNet's memory-light upsampling: no skip features are
kept, only the indices), back to stride 1. Every convolution is MTAN's ``conv_layer``: 3x3 with a
bias, BatchNorm, ReLU, initialised Xavier-normal with zero bias.

Filters are MTAN's ``[64, 128, 256, 512, 512]`` scaled by ``width / 64``: ``width=64`` is the paper's
network (about 25 million parameters, 64 output channels); the default 16 trains on a CPU.
"""
from __future__ import annotations

from collections.abc import Generator
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.models.backbones import Normalize, register_backbone, run_stages

FILTERS = (64, 128, 256, 512, 512)  # at width 64, the paper's


def filters(width: int) -> list[int]:
    """MTAN's filters scaled to ``width`` (``width=64``: the paper's)."""
    return [max(1, f * width // 64) for f in FILTERS]


def conv_layer(cin: int, cout: int) -> nn.Sequential:
    """MTAN's ``conv_layer``: 3x3 convolution (with a bias), BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def convs(c: int, n: int) -> nn.Module:
    return conv_layer(c, c) if n == 1 else nn.Sequential(*(conv_layer(c, c) for _ in range(n)))


def init_like_mtan(module: nn.Module) -> None:
    """Xavier-normal convolutions with zero bias, BatchNorm at identity, as MTAN initialises."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Trace(NamedTuple):
    """What a SegNet pass computed, for MTAN's attention: per encoder block its first
    convolution's output and its output (before pooling); per decoder block, deepest first, its
    unpooled input and its output. Outputs are the stages' as sent back to :meth:`SegNet.stages`
    (what the rest of the network read)."""

    enc_first: list[Tensor]
    enc_out: list[Tensor]
    unpooled: list[Tensor]
    dec_out: list[Tensor]


@register_backbone("segnet")
class SegNet(nn.Module):
    """SegNet, MTAN's version (stride 1, 64 channels at width 64): a VGG-16-like encoder and a
    decoder back to full resolution through max-unpooling.

    ``width`` scales MTAN's filters (64 is the paper's; 16 by default). No ImageNet weights: MTAN
    trains it from scratch, so ``pretrained`` is ignored; ``model.weights_path`` can start it from
    an earlier run's checkpoint. Ten stages (five encoder blocks before pooling, five decoder
    blocks) for MTAN and cross-stitch; the ``segnet_mtan`` architecture is the paper's attention
    on this network."""

    stride = 1

    def __init__(self, width: int = 16, pretrained: bool = False) -> None:
        super().__init__()
        f = filters(width)
        self.norm = Normalize()
        # encoder block j: f[j-1] -> f[j] (3 -> f[0] first), then 1, 1, 2, 2, 2 more convolutions
        self.enc_first = nn.ModuleList(conv_layer(cin, cout) for cin, cout in zip([3, *f[:-1]], f))
        self.enc_rest = nn.ModuleList(convs(c, n) for c, n in zip(f, (1, 1, 2, 2, 2)))
        # decoder block i, deepest first: f[4-i] -> f[3-i] (f[0] -> f[0] last), then 2, 2, 2, 1, 1 more
        out = [*f[3::-1], f[0]]  # f3, f2, f1, f0, f0
        self.dec_first = nn.ModuleList(conv_layer(cin, cout) for cin, cout in zip(f[::-1], out))
        self.dec_rest = nn.ModuleList(convs(c, n) for c, n in zip(out, (2, 2, 2, 1, 1)))
        self.channels = f[0]
        init_like_mtan(self)

    def encode(self, j: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder block ``j``: its first convolution's output and its output (before pooling)."""
        first = self.enc_first[j](x)
        return first, self.enc_rest[j](first)

    def decode(self, i: int, x: Tensor) -> Tensor:
        """Decoder block ``i`` (0 the deepest) on its unpooled input."""
        return self.dec_rest[i](self.dec_first[i](x))

    def stages(self, x: Tensor, trace: Trace | None = None) -> Generator[Tensor, Tensor, Tensor]:
        """The ten blocks' outputs, as every backbone yields its stages; ``trace``, when given, also
        collects what MTAN's attention reads (``segnet_mtan``)."""
        t = trace if trace is not None else Trace([], [], [], [])
        keep = trace is not None  # else nothing is held past its use
        x = self.norm(x)
        pooled: list[tuple[Tensor, tuple[int, int]]] = []
        for j in range(5):
            first, out = self.encode(j, x)
            out = yield out  # (B, f_j, H/2^j, W/2^j)
            if keep:
                t.enc_first.append(first)
                t.enc_out.append(out)
            x, where = F.max_pool2d(out, 2, 2, return_indices=True)  # (B, f_j, H/2^(j+1), W/2^(j+1))
            pooled.append((where, (int(out.shape[-2]), int(out.shape[-1]))))  # ints: traced sizes fail unpool's check
        for i in range(5):
            where, size = pooled[4 - i]
            # output_size: an odd side (48 -> 24 -> ... -> 3 -> 1) unpools to its own size, not twice the pooled
            x = F.max_unpool2d(x, where, 2, 2, output_size=size)  # (B, f_(4-i), H/2^(4-i), W/2^(4-i))
            if keep:
                t.unpooled.append(x)
            x = yield self.decode(i, x)  # (B, f_(3-i), H/2^(4-i), W/2^(4-i)); f_0 at the last
            if keep:
                t.dec_out.append(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))
