"""Object detection with an anchor-free centre-point head.

CenterNet (Zhou, Wang and Krähenbühl 2019, "Objects as Points"): every object is the peak of a
per-class heatmap at its centre, plus a regressed box size and a sub-cell centre offset read at
that peak. It needs no anchors and no hand-tuned box priors, which suits small images.

The head's outputs, for shared features ``(B, C, h, w)``:

- ``heatmap``: ``(B, K, h, w)`` logits, one channel per class;
- ``size``: ``(B, 2, h, w)`` box width and height as fractions of the image's width and height
  (so they do not depend on the feature stride, and decode at any image size);
- ``offset``: ``(B, 2, h, w)`` where the centre lies inside its feature cell, in cells (0..1).

The Gaussian splatted around each centre has per-axis sigma proportional to the box size,
``sigma = alpha * size / 6`` with ``alpha = 0.54`` (the elliptical Gaussian of TTFNet, Liu et al.
2020, "Training-Time-Friendly Network for Real-Time Object Detection"), a simpler stand-in for
CenterNet's ``gaussian_radius``. Mean average precision is in :mod:`mtl_core.measures.map_metric`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from mtl_core.data.base import unpad_detection
from mtl_core.measures.map_metric import mean_average_precision
from mtl_core.tasks.base import Task, register_kind, register_task

HEATMAP_PRIOR_BIAS = -2.19  # sigmoid(-2.19) ~= 0.1, CenterNet's focal-loss prior
GAUSSIAN_ALPHA = 0.54  # TTFNet's ratio of Gaussian extent to box size
MIN_SIGMA = 1.0 / 6.0  # in cells: CenterNet's radius-0 Gaussian (diameter 1, sigma = diameter / 6)
SIZE_WEIGHT = 0.1  # CenterNet's weights, with the size error measured in feature cells as there
OFFSET_WEIGHT = 1.0
TOP_K = 50
SCORE_THRESHOLD = 0.05
NMS_IOU = 0.5
OUTPUT_STRIDE = 4  # CenterNet's: one heatmap cell per 4x4 image pixels


class CenterNetHead(nn.Module):
    """One shared 3x3 conv trunk, then a single 1x1 conv for heatmap, size and offset together.
    CenterNet gives each output its own 3x3 branch; on small images three branches cost more than
    the backbone, and tiny separate convolutions are slow on a CPU.

    The grid is CenterNet's output stride 4: on finer features (``stride`` 2, the small CNN's) the
    trunk convolution has stride 2, which made a demo training step 15% faster than a stride-2
    grid at the same mAP."""

    def __init__(self, channels: int, num_classes: int, hidden: int = 32, stride: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        down = 2 if stride * 2 <= OUTPUT_STRIDE else 1
        self.trunk = nn.Sequential(nn.Conv2d(channels, hidden, 3, stride=down, padding=1, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(hidden, num_classes + 4, 1)  # heatmap (K), size (2), offset (2)
        # start every location at the prior "object with probability 0.1" so the focal loss
        # is not swamped by the many easy negatives in the first steps
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[:num_classes] = HEATMAP_PRIOR_BIAS

    def forward(self, features: Tensor) -> dict[str, Tensor]:  # (B, C, h, w)
        y = self.out(self.trunk(features))  # (B, K + 4, h, w)
        k = self.num_classes
        return {
            "heatmap": y[:, :k],  # (B, K, h, w) logits
            "size": y[:, k:k + 2],  # (B, 2, h, w) width, height / image size
            "offset": y[:, k + 2:],  # (B, 2, h, w) in cells
        }


@register_task("detection")
@register_kind("detection")
class DetectionTask(Task):
    """Boxes and classes of every object; primary metric mAP at IoU 0.5 (COCO's AP50)."""

    kind = "detection"
    primary = "map50"
    higher_is_better = True
    title = "Detection"
    description = "a box and a class for every visible object"

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return CenterNetHead(channels, len(self.class_names), stride=stride)

    # ---- targets -------------------------------------------------------------------------
    def encode(self, target: dict[str, Tensor], h: int, w: int) -> dict[str, Tensor]:
        """The padded batch of boxes as CenterNet's training targets on an ``h x w`` grid.

        Returns ``heatmap (B, K, h, w)``, ``index (B, M)`` (flat centre cell), ``size (B, M, 2)``,
        ``offset (B, M, 2)`` and ``valid (B, M)``; vectorised over images and boxes.
        """
        boxes = target["boxes"].float()  # (B, M, 4) xyxy pixels
        labels = target["labels"].long()  # (B, M), -1 = padding
        b, m = labels.shape
        k = len(self.class_names)
        big_h, big_w = self.info.hw  # the image the boxes are in: cells are w / W wide, h / H tall
        valid = labels >= 0  # (B, M)
        cell = boxes.new_tensor([w / big_w, h / big_h, w / big_w, h / big_h])  # pixels -> cells
        bc = boxes * cell  # (B, M, 4) in cells
        centre = (bc[..., :2] + bc[..., 2:]) / 2  # (B, M, 2) x, y
        extent = (bc[..., 2:] - bc[..., :2]).clamp(min=0)  # (B, M, 2) w, h in cells
        grid_max = boxes.new_tensor([w - 1, h - 1])
        ci = torch.minimum(centre.floor().clamp(min=0), grid_max)  # (B, M, 2) centre cell
        sigma = (GAUSSIAN_ALPHA * extent / 6).clamp(min=MIN_SIGMA)  # (B, M, 2)
        xs = torch.arange(w, dtype=boxes.dtype, device=boxes.device)
        ys = torch.arange(h, dtype=boxes.dtype, device=boxes.device)
        gx = ((xs - ci[..., 0:1]) / sigma[..., 0:1]).square() / 2  # (B, M, w)
        gy = ((ys - ci[..., 1:2]) / sigma[..., 1:2]).square() / 2  # (B, M, h)
        gauss = torch.exp(-(gy[..., :, None] + gx[..., None, :])) * valid[..., None, None]  # (B, M, h, w)
        # each class channel keeps the highest Gaussian over its boxes (CenterNet's np.maximum)
        heatmap = boxes.new_zeros(b, k, h * w).scatter_reduce(
            1, labels.clamp(min=0)[..., None].expand(b, m, h * w), gauss.reshape(b, m, h * w),
            reduce="amax", include_self=True).reshape(b, k, h, w)
        index = (ci[..., 1] * w + ci[..., 0]).long()  # (B, M)
        size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0) / boxes.new_tensor([big_w, big_h])  # (B, M, 2) fraction of image
        return {"heatmap": heatmap, "index": index, "size": size, "offset": centre - ci, "valid": valid}

    def ideal_output(self, target: dict[str, Tensor], h: int, w: int) -> dict[str, Tensor]:
        """The head output that reproduces ``target`` exactly on an ``h x w`` grid (for tests and
        for checking a decoder): heatmap logits of the splatted Gaussians, sizes and offsets at
        every centre cell. Two boxes of one class sharing a centre cell cannot both be represented
        (a limit of CenterNet itself); their size and offset are the larger of the two."""
        enc = self.encode(target, h, w)
        b, m = enc["index"].shape
        logits = torch.logit(enc["heatmap"].clamp(1e-4, 1 - 1e-4))  # (B, K, h, w)
        idx = torch.where(enc["valid"], enc["index"], torch.zeros_like(enc["index"]))[:, None, :].expand(b, 2, m)
        out = {}
        for key in ("size", "offset"):
            maps = logits.new_zeros(b, 2, h * w)
            src = (enc[key] * enc["valid"][..., None]).transpose(1, 2)  # (B, 2, M)
            # padding scatters zeros to cell 0, which amax over non-negative values ignores
            maps.scatter_reduce_(2, idx, src, reduce="amax", include_self=True)
            out[key] = maps.reshape(b, 2, h, w)
        return {"heatmap": logits, **out}

    # ---- loss ------------------------------------------------------------------------------
    def loss_terms(self, output: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
        """The three weighted CenterNet terms, ``heatmap``, ``size`` and ``offset``, in float32."""
        device_type = output["heatmap"].device.type
        with torch.autocast(device_type=device_type, enabled=False):  # focal loss needs float32
            logits = output["heatmap"].float()  # (B, K, h, w)
            b, _, h, w = logits.shape
            enc = self.encode({k: v.to(logits.device) for k, v in target.items()}, h, w)
            gt = enc["heatmap"]
            pos = gt.eq(1.0)  # exactly the centre cells: exp(0) == 1
            p = torch.sigmoid(logits)
            # penalty-reduced pixel-wise focal loss (CornerNet/CenterNet, alpha=2, beta=4);
            # logsigmoid keeps log(p) finite where sigmoid would round to 0 or 1
            # (masks multiply rather than index, so a GPU never waits on a data-dependent shape)
            pos_loss = ((1 - p).square() * F.logsigmoid(logits) * pos).sum()
            neg_loss = (p.square() * (1 - gt).pow(4) * F.logsigmoid(-logits) * ~pos).sum()
            heat = -(pos_loss + neg_loss) / pos.sum().clamp(min=1)

            valid = enc["valid"][..., None].float()  # (B, M, 1)
            n = valid.sum().clamp(min=1) * 2  # two coordinates per object
            idx = enc["index"].clamp(min=0)[:, None, :].expand(-1, 2, -1)  # (B, 2, M)

            def at_centres(x: Tensor) -> Tensor:  # (B, 2, h, w) -> (B, M, 2)
                return x.float().reshape(b, 2, h * w).gather(2, idx).transpose(1, 2)

            grid = logits.new_tensor([w, h])  # size error in cells, CenterNet's unit
            size = ((at_centres(output["size"]) - enc["size"]).abs() * grid * valid).sum() / n
            offset = ((at_centres(output["offset"]) - enc["offset"]).abs() * valid).sum() / n
        return {"heatmap": heat, "size": SIZE_WEIGHT * size, "offset": OFFSET_WEIGHT * offset}

    def loss(self, output: dict[str, Tensor], target: dict[str, Tensor]) -> Tensor:
        return sum(self.loss_terms(output, target).values())  # type: ignore[return-value]

    # ---- decode and metrics ----------------------------------------------------------------
    @torch.no_grad()
    def decode(self, output: dict[str, Tensor], image_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """Peaks of the heatmap (3x3 max-pool), the top 50, as boxes in an image of
        ``image_size = (H, W)``; per class NMS at IoU 0.5; scores > 0.05, descending."""
        heat = torch.sigmoid(output["heatmap"].float())  # (B, K, h, w)
        b, k, h, w = heat.shape
        big_h, big_w = image_size
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)  # (B, K, h, w)
        scores, flat = peaks.reshape(b, -1).topk(min(TOP_K, k * h * w), dim=1)  # (B, k)
        labels = flat // (h * w)
        cell = flat % (h * w)
        idx = cell[:, None, :].expand(-1, 2, -1)  # (B, 2, k)
        offset = output["offset"].float().reshape(b, 2, h * w).gather(2, idx)  # (B, 2, k)
        size = output["size"].float().reshape(b, 2, h * w).gather(2, idx).clamp(min=0)  # (B, 2, k)
        cx = ((cell % w) + offset[:, 0]) * (big_w / w)  # (B, k) pixels
        cy = ((cell // w) + offset[:, 1]) * (big_h / h)
        # at least one input cell wide: a barely trained head predicts zero sizes, and boxes of
        # zero area overlap nothing, so NMS would keep every duplicate
        bw = (size[:, 0] * big_w).clamp(min=big_w / w)
        bh = (size[:, 1] * big_h).clamp(min=big_h / h)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)  # (B, k, 4)
        boxes = clip_boxes_to_image(boxes, (big_h, big_w))
        result = []
        for i in range(b):  # NMS per image: batched_nms on one image stays on its fast path
            keep = scores[i] > SCORE_THRESHOLD
            bx, sc, lb = boxes[i][keep], scores[i][keep], labels[i][keep]
            kept = batched_nms(bx, sc, lb, NMS_IOU)  # sorted by descending score
            result.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept]})
        return result

    def metrics(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, float]:
        """``map50`` (primary) and ``map`` (IoU 0.5:0.95) over the whole set, COCO-style.

        Both are 0.0 when no image has any ground-truth box (COCO would report -1).
        """
        preds = self.decode(outputs, self.info.hw)
        gts = unpad_detection({k: v.cpu() for k, v in targets.items()})
        result = mean_average_precision([{k: v.cpu() for k, v in p.items()} for p in preds], gts)
        return {"map50": float(result["map50"]), "map": float(result["map"])}
