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
from torchvision.utils import draw_segmentation_masks

from mtl_core.data.base import unpad_detection
from mtl_core.measures.map_metric import mean_average_precision
from mtl_core.measures.matching import kept, match_boxes
from mtl_core.measures.stats import confusion_from_pairs, labelled, per_sample, pr_curve
from mtl_core.measures.types import COUNT, FLAG, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Task, register_task
from mtl_core.tasks.drawing import (
    HIT,
    MISSED,
    WRONG,
    colour_for,
    draw_texts,
    font_size_for,
    hex_colour,
    outline_boxes,
    place_labels,
    text_size,
)

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
class DetectionTask(Task):
    """Boxes and classes of every object; primary metric mAP at IoU 0.5 (COCO's AP50)."""

    primary = "map50"
    higher_is_better = True
    title = "Detection"
    description = "a box and a class for every visible object"
    draw_order = 20
    fusion = "boxes"

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return CenterNetHead(channels, self.info.num_classes, stride=stride)

    # ---- targets -------------------------------------------------------------------------
    def encode(self, target: dict[str, Tensor], h: int, w: int) -> dict[str, Tensor]:
        """The padded batch of boxes as CenterNet's training targets on an ``h x w`` grid.

        Returns ``heatmap (B, K, h, w)``, ``index (B, M)`` (flat centre cell), ``size (B, M, 2)``,
        ``offset (B, M, 2)`` and ``valid (B, M)``; vectorised over images and boxes.
        """
        boxes = target["boxes"].float()  # (B, M, 4) xyxy pixels
        labels = target["labels"].long()  # (B, M), -1 = padding
        b, m = labels.shape
        k = self.info.num_classes
        s = float(self.info.image_size)
        valid = labels >= 0  # (B, M)
        cell = boxes.new_tensor([w / s, h / s, w / s, h / s])  # pixels -> cells
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
        size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0) / s  # (B, M, 2) fraction of image
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
        s = self.info.image_size
        preds = self.decode(outputs, (s, s))
        gts = unpad_detection({k: v.cpu() for k, v in targets.items()})
        result = mean_average_precision([{k: v.cpu() for k, v in p.items()} for p in preds], gts)
        return {"map50": float(result["map50"]), "map": float(result["map"])}

    # ---- inspection ------------------------------------------------------------------------
    error_columns = (
        ErrorColumn("failed", "any box wrong", FLAG, help="a missed object or a false box at the score threshold"),
        ErrorColumn("misses", "missed objects", COUNT, help="objects no box of their class found (IoU 0.5)"),
        ErrorColumn("false_positives", "false boxes", COUNT, help="boxes that found no object of their class"),
        ErrorColumn("hits", "found objects", COUNT, worse="low"),
        ErrorColumn("objects", "objects", COUNT, worse=""),
    )

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        """Boxes scoring ``score_threshold`` or more matched to the truth at IoU 0.5, COCO-style."""
        def measure(p, t):
            p, t = kept(p, score_threshold), kept(t, 0.0)
            pred_to_gt, gt_to_pred = match_boxes(p["boxes"], p["scores"], p["labels"], t["boxes"], t["labels"])
            misses, false = int((gt_to_pred < 0).sum()), int((pred_to_gt < 0).sum())
            return {"failed": misses + false > 0, "misses": misses, "false_positives": false,
                    "hits": int((gt_to_pred >= 0).sum()), "objects": len(t["labels"])}

        return per_sample(self.error_columns, predictions, truths, measure)

    def confusions(self, predictions, truths, score_threshold: float = 0.3) -> list[Confusion]:
        """Boxes, not images: rows the true class, columns the predicted one, each with a
        background line. Boxes scoring ``score_threshold`` or more are matched to objects at IoU
        0.5 (COCO's greedy order), first to objects of their own class (the diagonal), then what
        is left to objects of any class (a right box with a wrong label); an object no box found
        is in the background column, a box that found no object in the background row."""
        k = self.info.num_classes
        names = [self.class_name(c) for c in range(k)]
        pairs = []
        for i in labelled(truths):
            p, t = kept(predictions[i], score_threshold), kept(truths[i], 0.0)
            p2g, g2p = match_boxes(p["boxes"], p["scores"], p["labels"], t["boxes"], t["labels"])
            p2g_any, g2p_any = match_boxes(p["boxes"], p["scores"], p["labels"], t["boxes"], t["labels"],
                                           class_aware=False, gt_taken=g2p >= 0, pred_taken=p2g >= 0)
            for d in range(len(p["labels"])):
                g = int(p2g[d]) if p2g[d] >= 0 else int(p2g_any[d])
                pairs.append((int(t["labels"][g]) if g >= 0 else k, int(p["labels"][d]), i, 1))
            for g in range(len(t["labels"])):
                if g2p[g] < 0 and g2p_any[g] < 0:
                    pairs.append((int(t["labels"][g]), k, i, 1))
        return [confusion_from_pairs("Detection", [*names, "background"], [*names, "background (missed)"], pairs,
                                     unit="boxes", note=f"boxes scoring {score_threshold:.2f} or more, IoU 0.5")]

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        """Precision-recall per class at IoU 0.5 over every decoded box; its AP is the run's
        per-class AP50 (same matching, same 101-point interpolation)."""
        k = self.info.num_classes
        scores: list[list[float]] = [[] for _ in range(k)]
        hits: list[list[bool]] = [[] for _ in range(k)]
        num_truth = [0] * k
        for i in labelled(truths):
            p, t = kept(predictions[i], 0.0), kept(truths[i], 0.0)
            pred_to_gt, _ = match_boxes(p["boxes"], p["scores"], p["labels"], t["boxes"], t["labels"])
            for d, (s, c) in enumerate(zip(p["scores"].tolist(), p["labels"].tolist(), strict=True)):
                if 0 <= c < k:
                    scores[c].append(s)
                    hits[c].append(bool(pred_to_gt[d] >= 0))
            for c in t["labels"].tolist():
                if 0 <= c < k:
                    num_truth[c] += 1
        return [pr_curve(self.class_name(c), scores[c], hits[c], num_truth[c], score_threshold)
                for c in range(k) if num_truth[c]]

    # ---- drawing ---------------------------------------------------------------------------
    def target_to_prediction(self, target: dict[str, Tensor]) -> dict[str, Tensor]:
        """One image's ground truth (padded or not) as ``{"boxes", "labels"}`` with no scores."""
        labels = target["labels"].reshape(-1).long()
        keep = labels >= 0
        return {"boxes": target["boxes"].reshape(-1, 4).float()[keep], "labels": labels[keep]}

    def summarize(self, prediction: dict[str, Tensor], score_threshold: float = 0.3) -> str:
        """The boxes scoring ``score_threshold`` or more: "2 boxes: star 0.91, circle 0.55"."""
        labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        scores = prediction.get("scores")
        scored = scores is not None
        scores = torch.as_tensor(scores).reshape(-1).tolist() if scored else [1.0] * len(labels)
        kept = [(self.class_name(int(c)), s) for c, s in zip(labels, scores, strict=False) if s >= score_threshold]
        if not kept:
            return f"no box scores {score_threshold:.2f} or more"
        shown = ", ".join(f"{n} {s:.2f}" if scored else n for n, s in kept[:8])
        return f"{len(kept)} box{'es' if len(kept) != 1 else ''}: {shown}" + (" ..." if len(kept) > 8 else "")

    def draw(self, image: Tensor, prediction: dict[str, Tensor], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """Boxes in their class colour, labelled "class score" (or "class" for ground truth).

        Outlines and labels are always drawn solid so they stay legible; ``opacity`` tints the
        inside of each box (0 = outline only). Boxes scoring below ``score_threshold`` are left out.
        """
        boxes = prediction["boxes"].detach().float().cpu().reshape(-1, 4)
        labels = prediction["labels"].detach().long().cpu().reshape(-1)
        scores = prediction.get("scores")
        if scores is not None:
            scores = scores.detach().float().cpu().reshape(-1)
            keep = (scores >= score_threshold).nonzero()[:, 0]
            keep = keep[scores[keep].argsort()]  # lowest first, so the most confident box is on top
            boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
        out = image.clone()
        if len(boxes) == 0:
            return out
        h, w = image.shape[-2:]
        boxes = clip_boxes_to_image(boxes, (h, w))
        colours = [colour_for(int(c)) for c in labels]
        names = self.info.class_names
        text = [names[c] if 0 <= c < len(names) else str(c) for c in labels.tolist()]
        if scores is not None:
            text = [f"{t} {s:.2f}" for t, s in zip(text, scores.tolist())]
        if opacity > 0:
            ys = torch.arange(h, device=out.device)[None, :, None]
            xs = torch.arange(w, device=out.device)[None, None, :]
            b = boxes.to(out.device)[:, :, None, None]  # (n, 4, 1, 1)
            inside = (xs >= b[:, 0]) & (xs < b[:, 2]) & (ys >= b[:, 1]) & (ys < b[:, 3])  # (n, H, W)
            out = draw_segmentation_masks(out, inside, alpha=min(float(opacity), 1.0), colors=colours)
        width = max(1, round(min(h, w) / 160))  # visible on a 640 px upload, not fat on 64 px
        out = outline_boxes(out, boxes, colours, width)
        # the most confident box's label is placed first, so it gets the best place
        return self._labelled(out, boxes.flip(0), text[::-1], colours[::-1])

    def _labelled(self, image: Tensor, boxes: Tensor, texts: list[str], colours: list) -> Tensor:
        """``texts`` placed by :func:`~mtl_core.tasks.drawing.place_labels` (in this order) and drawn."""
        h, w = image.shape[-2:]
        size = font_size_for(h, w)
        xys = place_labels(boxes.tolist(), [text_size(t, size) for t in texts], (h, w))
        return draw_texts(image, texts, xys, colours, size)

    def draw_errors(self, image: Tensor, prediction: dict[str, Tensor], truth: dict[str, Tensor],
                    score_threshold: float = 0.3) -> Tensor:
        """The boxes scoring ``score_threshold`` or more matched to the truth as COCO does (IoU 0.5,
        same class; :func:`~mtl_core.measures.matching.match_boxes`): hits outlined green, false
        positives red ("star 0.91"), missed truth boxes amber and dashed, one pixel thicker
        ("missed star"). Labels are placed so they hide none of the boxes where there is room."""
        pred = {k: v.cpu() for k, v in kept(prediction, score_threshold).items()}  # boxes (D, 4) ...
        gt = {k: v.cpu() for k, v in kept(truth, float("-inf")).items()}  # boxes (G, 4) ...
        pred_to_gt, gt_to_pred = match_boxes(pred["boxes"], pred["scores"], pred["labels"], gt["boxes"], gt["labels"],
                                             iou_threshold=0.5, class_aware=True)  # (D,), (G,)
        h, w = image.shape[-2:]
        width = max(1, round(min(h, w) / 160))
        found = pred_to_gt >= 0  # (D,)
        lost = gt_to_pred < 0  # (G,)
        p_boxes = clip_boxes_to_image(pred["boxes"], (h, w))  # (D, 4)
        g_boxes = clip_boxes_to_image(gt["boxes"][lost], (h, w))  # (M, 4)
        p_colours = [HIT if f else WRONG for f in found.tolist()]
        out = image.clone()
        if len(g_boxes):
            out = outline_boxes(out, g_boxes, [MISSED] * len(g_boxes), width + 1, dashed=True)
        if len(p_boxes):
            out = outline_boxes(out, p_boxes, p_colours, width)
        texts = [f"{self.class_name(int(c))} {float(s):.2f}" for c, s in zip(pred["labels"], pred["scores"], strict=True)]
        texts += [f"missed {self.class_name(int(c))}" for c in gt["labels"][lost]]
        order = pred["scores"].argsort(descending=True).tolist()  # most confident labelled first
        boxes = torch.cat([p_boxes[order], g_boxes])  # (D + M, 4)
        texts = [texts[i] for i in order] + texts[len(order):]
        colours = [p_colours[i] for i in order] + [MISSED] * len(g_boxes)
        return self._labelled(out, boxes, texts, colours) if texts else out  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("hit", hex_colour(HIT)), ("false positive", hex_colour(WRONG)), ("missed", hex_colour(MISSED))]
