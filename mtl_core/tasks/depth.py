"""Monocular depth: distance from the camera at every pixel (``0`` in the target = no label).

Loss: L1 on log-depth over labelled pixels. Log space makes the loss depend on the *relative*
error (predicting 2 for 1 costs as much as 20 for 10), which is what the primary metric abs-rel
measures and how Eigen et al., "Depth Map Prediction from a Single Image using a Multi-Scale
Deep Network" (NeurIPS 2014) train; L1 rather than L2 keeps a few badly wrong pixels (object
edges, where the upsampled prediction mixes near and far) from dominating the gradient.
Metrics follow Eigen et al. 2014: abs-rel, RMSE and the delta < 1.25 threshold accuracy; and
the absolute error the multi-task benchmarks report beside abs-rel (NYUv2 and Cityscapes in Liu
et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019, and the methods compared on
them since: their "Abs Err" and "Rel Err").
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import Task, register_kind, register_task
from mtl_core.tasks.segmentation import CHUNK, upsample

MIN_DEPTH = 1e-6  # predictions are clamped here before the log, so a tiny softplus never gives -inf


class DepthHead(nn.Module):
    """3x3 conv-BN-ReLU, 1x1 conv, softplus: ``(B, C, h, w)`` -> positive depth ``(B, 1, h, w)``.

    The output is ``softplus(x) * depth_max``, with the last bias set so that a fresh head
    predicts half of ``depth_max`` everywhere: a sensible start that trains in few steps.
    """

    def __init__(self, channels: int, depth_max: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        )
        self.out = nn.Conv2d(channels, 1, 1)
        nn.init.constant_(self.out.bias, math.log(math.expm1(0.5)))  # softplus(b) = 0.5
        self.scale = float(depth_max)

    def forward(self, features: Tensor) -> Tensor:
        return F.softplus(self.out(self.body(features))) * self.scale  # (B, 1, h, w)


def depth_map(target: Tensor) -> Tensor:
    """``(B, 1, H, W)`` float from ``(B, 1, H, W)`` or ``(B, H, W)``."""
    return (target[:, None] if target.dim() == 3 else target).float()


def valid_pixels(target: Tensor) -> Tensor:
    """Labelled pixels: positive and finite."""
    return (target > 0) & torch.isfinite(target)


@register_task("depth")
@register_kind("depth")
class Depth(Task):
    """Per-pixel depth; metrics over labelled pixels (target > 0) of the whole set, pooled:

    - ``abs_rel`` (primary, lower is better): mean ``|d - d*| / d*``; the benchmarks' "Rel Err";
    - ``abs_err``: mean ``|d - d*|``, in the dataset's depth units; the benchmarks' "Abs Err";
    - ``rmse``: ``sqrt(mean (d - d*)^2)``, in the dataset's depth units;
    - ``delta1``: fraction of pixels with ``max(d / d*, d* / d) < 1.25``.

    Pooled: every labelled pixel of the set weighs the same. LibMTL's ``DepthMetric``
    (``examples/nyu/utils.py``) and MTAN's ``depth_error`` instead average each batch's per-pixel
    mean, weighted by the batch's number of images, so their numbers move a little with the batch
    size and with how many pixels each batch has labelled; the pooled mean is the one that does not,
    and the two agree when every image has the same number of labelled pixels. A labelled pixel is
    one whose target is positive (theirs: non-zero; the benchmarks' depths are never negative).

    With no labelled pixel (empty set, or all targets 0) all four are 0.0 and the loss is 0:
    there is nothing to measure, so read them together with the set's size.
    """

    kind = "depth"
    primary = "abs_rel"
    higher_is_better = False
    title = "Depth"
    description = "the distance from the camera at every pixel"

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        depth_max = self.option("depth_max", info.depth_max)
        self.depth_max = float(depth_max) if depth_max > 0 else 1.0

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return DepthHead(channels, self.depth_max)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        target = depth_map(target)  # (B, 1, H, W)
        pred = upsample(output if output.dim() == 4 else output[:, None], target.shape[-2:])  # (B, 1, H, W)
        valid = valid_pixels(target)
        # where() keeps unlabelled pixels out of the log, so they give neither NaN nor gradient
        safe_target = torch.where(valid, target, torch.ones_like(target))
        err = (pred.clamp(min=MIN_DEPTH).log() - safe_target.log()).abs()
        return torch.where(valid, err, torch.zeros_like(err)).sum() / valid.sum().clamp(min=1)

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        targets = depth_map(targets)  # (N, 1, H, W)
        outputs = outputs if outputs.dim() == 4 else outputs[:, None]
        abs_rel = abs_err = sq = delta1 = 0.0
        count = 0
        for start in range(0, targets.shape[0], CHUNK):
            gt = targets[start:start + CHUNK].double()
            pred = upsample(outputs[start:start + CHUNK], gt.shape[-2:]).to(gt.device).double()
            valid = valid_pixels(gt)
            d, d_star = pred[valid].clamp(min=MIN_DEPTH), gt[valid]  # (n,)
            abs_rel += float(((d - d_star).abs() / d_star).sum())
            abs_err += float((d - d_star).abs().sum())
            sq += float(((d - d_star) ** 2).sum())
            delta1 += float((torch.maximum(d / d_star, d_star / d) < 1.25).sum())
            count += int(valid.sum())
        if count == 0:
            return {"abs_rel": 0.0, "abs_err": 0.0, "rmse": 0.0, "delta1": 0.0}
        return {"abs_rel": abs_rel / count, "abs_err": abs_err / count, "rmse": math.sqrt(sq / count),
                "delta1": delta1 / count}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"depth": float (H, W)}]`` per image at ``image_size`` (default: the dataset's), on the CPU."""
        size = tuple(image_size or self.info.hw)
        out = output.detach()
        out = out[None] if out.dim() == 3 else out[:, None] if out.dim() == 2 else out  # (B, 1, h, w)
        depth = upsample(out, size)[:, 0].cpu()  # (B, H, W)
        return [{"depth": depth[i]} for i in range(depth.shape[0])]
