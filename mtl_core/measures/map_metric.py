"""COCO-style mean average precision for box detection, in pure torch.

Follows the COCO detection evaluation (Lin et al. 2014, "Microsoft COCO: Common Objects in
Context"; the reference is ``pycocotools.cocoeval.COCOeval``) for the "all areas" setting:

- per image and class, detections are taken in descending score (stable on ties) and matched
  greedily, each to the still unmatched ground truth (GT) of its class with the highest IoU,
  provided IoU >= the threshold; each GT is matched at most once; every unmatched detection
  is a false positive;
- per class, all images' detections are ranked by score; precision is made monotone
  (the maximum precision at any higher recall) and read at the 101 recall points
  0, 0.01, ..., 1 (0 where that recall is never reached); AP is their mean;
- the mean is over the classes that have GT; a class with detections but no GT is ignored.

Differences from pycocotools, on purpose: no crowd or area ranges; when no class has any GT
the result is 0.0 (pycocotools reports -1) so a dashboard can plot it. Thresholds and recall
points are computed in float64 the way ``numpy.linspace`` does, so a box at IoU exactly 0.6
counts as a match at the 0.6 threshold, as in pycocotools.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou


def coco_linspace(start: float, stop: float, num: int) -> Tensor:
    """``numpy.linspace`` in float64, bit for bit (``torch.linspace`` rounds differently, which
    moves boundary cases such as recall 0.3 or IoU 0.6 across a threshold)."""
    values = start + torch.arange(num, dtype=torch.float64) * ((stop - start) / max(num - 1, 1))
    values[-1] = stop
    return values


COCO_IOU_THRESHOLDS: Tensor = coco_linspace(0.5, 0.95, 10)  # (10,)
RECALL_POINTS: Tensor = coco_linspace(0.0, 1.0, 101)  # (101,)


def _pad(items: list[Tensor], fill: float, shape_tail: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Stack variable-length per-image tensors into ``(B, N, *shape_tail)``, padding with ``fill``."""
    n = max([len(t) for t in items] + [1])
    out = torch.full((len(items), n, *shape_tail), fill, dtype=dtype)
    for i, t in enumerate(items):
        out[i, : len(t)] = t.to(dtype).reshape(len(t), *shape_tail)
    return out


def match_detections(pred_boxes: Tensor, pred_labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                     iou_thresholds: Tensor) -> Tensor:
    """Greedy COCO matching on a padded batch, for every threshold at once.

    ``pred_*`` are ``(B, D, 4)`` / ``(B, D)`` sorted by descending score within each image,
    label ``-1`` for padding; ``gt_*`` are ``(B, G, 4)`` / ``(B, G)``, label ``-1`` for padding.
    Returns ``tp``: bool ``(B, T, D)``, True where detection ``d`` matched a GT at threshold ``t``.
    The loop runs over detection ranks (at most a few hundred), each step vectorised over images,
    thresholds and GTs, so 512 images x 50 detections take milliseconds.
    """
    b, d = pred_labels.shape
    t = len(iou_thresholds)
    iou = torch.stack([box_iou(p, g) for p, g in zip(pred_boxes, gt_boxes)])  # (B, D, G) float64
    same_class = (pred_labels[:, :, None] == gt_labels[:, None, :]) & (pred_labels[:, :, None] >= 0)
    iou = torch.where(same_class, iou, torch.full_like(iou, -1.0))  # only same-class pairs can match
    thr = iou_thresholds.to(iou.dtype).clamp(max=1 - 1e-10)[None, :, None]  # (1, T, 1), as pycocotools
    matched = torch.zeros(b, t, iou.shape[2], dtype=torch.bool)  # (B, T, G)
    tp = torch.zeros(b, t, d, dtype=torch.bool)
    # a detection with no same-class GT above the lowest threshold can never match: skip its rank
    ranks = (iou >= thr.min()).any(2).any(0).nonzero()[:, 0].tolist()
    for k in ranks:
        cand_iou = iou[:, k, None, :].expand(b, t, -1)  # (B, T, G)
        ok = (cand_iou >= thr) & ~matched
        cand_iou = torch.where(ok, cand_iou, torch.full_like(cand_iou, -2.0))
        best = cand_iou.argmax(dim=2, keepdim=True)  # (B, T, 1); argmax: max(dim) is slow on CPU
        hit = cand_iou.gather(2, best)[:, :, 0] >= thr[:, :, 0]  # (B, T)
        tp[:, :, k] = hit
        matched.scatter_(2, best, hit[:, :, None] | matched.gather(2, best))
    return tp


def average_precision(tp: Tensor, num_gt: int) -> Tensor:
    """AP for one class from ``tp`` (bool ``(T, N)``, detections ranked by descending score):
    monotone precision read at the 101 recall points. Returns ``(T,)`` float64."""
    t, n = tp.shape
    if n == 0 or num_gt == 0:
        return torch.zeros(t, dtype=torch.float64)
    tps = tp.long().cumsum(1).double()  # (T, N)
    fps = torch.arange(1, n + 1, dtype=torch.float64) - tps
    recall = tps / num_gt
    precision = tps / (tps + fps)
    # envelope: the best precision at this or any higher recall
    precision = precision.flip(1).cummax(1).values.flip(1)
    idx = torch.searchsorted(recall.contiguous(), RECALL_POINTS.expand(t, -1).contiguous(), side="left")  # (T, 101)
    read = precision.gather(1, idx.clamp(max=n - 1))
    return torch.where(idx < n, read, torch.zeros_like(read)).mean(1)


def mean_average_precision(preds: Sequence[dict[str, Tensor]], targets: Sequence[dict[str, Tensor]],
                           iou_thresholds: Sequence[float] | Tensor | None = None,
                           max_detections: int = 100) -> dict[str, object]:
    """COCO mAP over a set of images.

    ``preds[i]``: ``{"boxes": (n, 4) xyxy, "scores": (n,), "labels": (n,) long}``;
    ``targets[i]``: ``{"boxes": (m, 4) xyxy, "labels": (m,) long}`` (unpadded), same coordinates.
    ``iou_thresholds`` defaults to COCO's 0.5:0.05:0.95; ``max_detections`` keeps the top-scored
    detections per image and class, as pycocotools does.

    Returns ``{"map": mean over thresholds and classes, "map50": AP at IoU 0.5, "map75": AP at
    0.75 (each NaN when that threshold is not evaluated), "per_threshold": {iou: AP},
    "per_class": {class: AP averaged over thresholds}}``; the means are over classes with GT,
    and all 0.0 when no image has any GT.
    """
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets; pass one of each per image")
    thr = COCO_IOU_THRESHOLDS if iou_thresholds is None else torch.as_tensor(iou_thresholds, dtype=torch.float64).reshape(-1)
    t = len(thr)
    gt_labels_all = [g["labels"].detach().cpu().long().reshape(-1) for g in targets]
    classes = torch.unique(torch.cat(gt_labels_all + [torch.zeros(0, dtype=torch.long)]))
    classes = classes[classes >= 0]
    per_threshold = {round(float(x), 4): 0.0 for x in thr}
    if len(classes) == 0:  # nothing to find: report 0 rather than pycocotools' -1
        return {"map": 0.0, "map50": _at(per_threshold, 0.5), "map75": _at(per_threshold, 0.75),
                "per_threshold": per_threshold, "per_class": {}}

    # per image: sort by descending score (stable, as pycocotools' mergesort)
    boxes, scores, labels = [], [], []
    for p in preds:
        s = p["scores"].detach().cpu().double().reshape(-1)
        order = torch.sort(s, descending=True, stable=True).indices
        boxes.append(p["boxes"].detach().cpu().double().reshape(-1, 4)[order])
        scores.append(s[order])
        labels.append(p["labels"].detach().cpu().long().reshape(-1)[order])
    pred_boxes = _pad(boxes, 0.0, (4,), torch.float64)  # (B, D, 4)
    pred_scores = _pad(scores, -1.0, (), torch.float64)  # (B, D)
    pred_labels = _pad(labels, -1, (), torch.long)  # (B, D)
    # rank of each detection among its image's detections of the same class
    same = pred_labels[:, :, None] == pred_labels[:, None, :]  # (B, D, D)
    rank = (same & torch.ones_like(same[0]).tril(-1)).sum(2)  # (B, D)
    pred_labels = torch.where(rank < max_detections, pred_labels, torch.full_like(pred_labels, -1))
    gt_boxes = _pad([g["boxes"].detach().cpu().double().reshape(-1, 4) for g in targets], 0.0, (4,), torch.float64)
    gt_labels = _pad(gt_labels_all, -1, (), torch.long)  # (B, G)

    tp = match_detections(pred_boxes, pred_labels, gt_boxes, gt_labels, thr)  # (B, T, D)

    # rank all images' detections by score: flatten in image order, then a stable sort
    real = pred_labels.reshape(-1) >= 0  # drop padding before the per-class work
    flat_scores = pred_scores.reshape(-1)[real]  # (N,)
    flat_labels = pred_labels.reshape(-1)[real]
    flat_tp = tp.permute(1, 0, 2).reshape(t, -1)[:, real]  # (T, N)
    order = torch.sort(flat_scores, descending=True, stable=True).indices
    flat_labels, flat_tp = flat_labels[order], flat_tp[:, order]
    num_gt = torch.bincount(gt_labels[gt_labels >= 0], minlength=int(classes.max()) + 1)

    ap = torch.stack([average_precision(flat_tp[:, flat_labels == c], int(num_gt[c])) for c in classes.tolist()])  # (C, T)
    per_threshold = {round(float(x), 4): float(v) for x, v in zip(thr, ap.mean(0))}
    return {
        "map": float(ap.mean()),
        "map50": _at(per_threshold, 0.5),
        "map75": _at(per_threshold, 0.75),
        "per_threshold": per_threshold,
        "per_class": {int(c): float(v) for c, v in zip(classes, ap.mean(1))},
    }


def _at(per_threshold: dict[float, float], iou: float) -> float:
    return per_threshold.get(round(iou, 4), float("nan"))
