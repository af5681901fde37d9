"""Surface normals: which way the surface seen at each pixel faces, a unit vector per pixel.

Target: float ``(3, H, W)`` unit vectors in the camera's frame, ``x`` to the right, ``y`` up and
``z`` towards the camera (a surface facing the camera is ``(0, 0, 1)``); a pixel whose vector is
all zeros has no label.

Loss: ``1 - cos`` between the predicted and the true normal, averaged over labelled pixels: the
loss of MTAN (Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
``im2im_pred/utils.py``) and LibMTL (``examples/nyu/utils.py``, ``NormalLoss``), 0 for a perfect
prediction and 2 for the opposite direction. The head's output is L2-normalised over its
channels, and again after it is upsampled to the label's size (bilinear mixing shortens vectors).

Metrics are those of Eigen and Fergus, "Predicting Depth, Surface Normals and Semantic Labels with
a Common Multi-Scale Convolutional Architecture" (ICCV 2015), as MTAN and LibMTL compute them:
the angle ``acos(clamp(pred . gt, -1, 1))`` in degrees at every labelled pixel of the set, pooled.
Where this differs from them: a pixel counts as labelled when any component of its target is
nonzero (theirs: when the components' *sum* is nonzero, which also drops a real normal such as
``(0.6, -0.6, 0)``); MTAN averages the per-batch means and medians over batches, LibMTL and this
pool every pixel of the set before the mean and the median (so they do not depend on the batch
size); MTAN normalises the prediction inside its model, LibMTL in the loss and the metric, this
in the head and again after upsampling.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.tasks.base import Task, register_kind, register_task
from mtl_core.tasks.segmentation import CHUNK, dense_head, upsample

# the thresholds of the "within" metrics, in degrees (Eigen and Fergus 2015), by metric key
WITHIN = {"within_11": 11.25, "within_22": 22.5, "within_30": 30.0}


def normal_map(target: Tensor) -> Tensor:
    """``(B, 3, H, W)`` float from a batch of targets (or ``(3, H, W)`` for one image)."""
    target = torch.as_tensor(target)
    return (target[None] if target.dim() == 3 else target).float()


def labelled(normals: Tensor) -> Tensor:
    """``(B, H, W)`` bool from ``(B, 3, H, W)``: the pixels that have a label (a finite vector, not
    all 0)."""
    x, y, z = normals.unbind(dim=1)
    return (x.ne(0) | y.ne(0) | z.ne(0)) & torch.isfinite(x + y + z)  # a NaN or inf in any component spreads


def unit(x: Tensor) -> Tensor:
    """Vectors along dim 1 scaled to length 1 (a zero vector stays zero)."""
    return F.normalize(x, p=2.0, dim=1, eps=1e-12)


def angles(pred: Tensor, gt: Tensor) -> Tensor:
    """Degrees between each pixel's predicted and true normal, over the labelled pixels only:
    ``(n,)`` float64 in ``[0, 180]``; ``pred`` is normalised here, ``gt`` is taken as it is. The
    dot products are in the maps' precision (float32: good to ~0.02 degrees near 0), the arc
    cosine in float64."""
    valid = labelled(gt)  # (B, H, W)
    (px, py, pz), (gx, gy, gz) = pred.unbind(dim=1), gt.unbind(dim=1)
    length = (px * px + py * py + pz * pz).sqrt_().clamp_(min=1e-12)
    cos = (px * gx + py * gy + pz * gz).div_(length)[valid]  # (n,)
    return torch.rad2deg(torch.acos(cos.double().clamp_(-1.0, 1.0)))


def median(values: Tensor) -> float:
    """The median as numpy computes it (the mean of the two middle values of an even count),
    exactly, by selection rather than a sort of the whole set (``torch.quantile`` refuses more
    than 16 million values, fewer than NYUv2's test set has pixels)."""
    n = values.numel()
    if n == 0:
        return 0.0
    lo = float(values.kthvalue((n + 1) // 2).values)
    return lo if n % 2 else (lo + float(values.kthvalue(n // 2 + 1).values)) / 2


class NormalsHead(nn.Module):
    """3x3 conv-BN-ReLU, 1x1 conv to 3 channels, L2-normalised: ``(B, C, h, w)`` -> unit ``(B, 3, h, w)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = dense_head(channels, 3)
        # a fresh head leans towards the camera, where most surfaces face, rather than a random way
        nn.init.constant_(self.body[-1].bias, 0.0)
        with torch.no_grad():
            self.body[-1].bias[2] = 1.0

    def forward(self, features: Tensor) -> Tensor:
        return unit(self.body(features))  # (B, 3, h, w)


@register_task("normals")
@register_kind("normals")
class Normals(Task):
    """A unit surface normal per pixel; metrics over labelled pixels of the whole set, pooled:

    - ``mean`` (primary, lower is better): the mean angle in degrees between prediction and truth;
    - ``median``: the median angle in degrees;
    - ``within_11``, ``within_22``, ``within_30``: the share of pixels whose angle is below
      11.25°, 22.5° and 30°.

    With no labelled pixel (empty set, or all targets 0) every metric is 0.0 and the loss is 0:
    there is nothing to measure, so read them together with the set's size.
    """

    kind = "normals"
    primary = "mean"
    higher_is_better = False
    title = "Normals"
    description = "which way the surface faces at every pixel (a unit vector)"

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return NormalsHead(channels)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        gt = normal_map(target)  # (B, 3, H, W)
        pred = unit(upsample(output, gt.shape[-2:]))  # (B, 3, H, W): normalised after upsampling
        valid = labelled(gt)  # (B, H, W)
        err = 1.0 - (pred * torch.where(valid[:, None], gt, 0.0)).sum(dim=1)  # (B, H, W)
        return torch.where(valid, err, 0.0).sum() / valid.sum().clamp(min=1)

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        targets = normal_map(targets)  # (N, 3, H, W)
        parts, total = [], 0.0
        within = dict.fromkeys(WITHIN, 0)
        for start in range(0, targets.shape[0], CHUNK):
            gt = targets[start:start + CHUNK]
            pred = upsample(outputs[start:start + CHUNK], gt.shape[-2:]).to(gt.device)
            a = angles(pred, gt)  # (n,) degrees
            total += float(a.sum())
            for key, limit in WITHIN.items():
                within[key] += int((a < limit).sum())
            parts.append(a.float().cpu())  # 4 bytes a pixel: a whole test set's angles fit in memory
        count = sum(p.numel() for p in parts)
        if count == 0:
            return {"mean": 0.0, "median": 0.0, **dict.fromkeys(WITHIN, 0.0)}
        return {"mean": total / count, "median": median(torch.cat(parts)), **{k: v / count for k, v in within.items()}}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        """``[{"normals": float (3, H, W)}]`` unit vectors per image at ``image_size`` (default: the
        dataset's), on the CPU."""
        size = tuple(image_size or self.info.hw)
        out = output.detach()
        out = out[None] if out.dim() == 3 else out  # (B, 3, h, w)
        normals = unit(upsample(out, size)).cpu()  # (B, 3, H, W)
        return [{"normals": normals[i]} for i in range(normals.shape[0])]


def tilt(normals: Tensor) -> Tensor:
    """Degrees between each normal ``(..., 3, H, W)`` and the camera's direction ``(0, 0, 1)``."""
    return torch.rad2deg(torch.acos(normals.select(-3, 2).clamp(-1.0, 1.0)))

