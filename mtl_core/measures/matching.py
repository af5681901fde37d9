"""Matching predicted boxes to ground truth in one image, as COCO's evaluation does (Lin et al.
2014, "Microsoft COCO: Common Objects in Context"; ``pycocotools.cocoeval``): detections in
descending score, each taking the still unmatched ground-truth box of its class with the highest
IoU, provided the IoU reaches the threshold. Used by the per-sample errors, the drawings and the
detection confusion matrix, so all three agree on which box is a hit, a false positive or a miss.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


def match_boxes(pred_boxes: Tensor, pred_scores: Tensor, pred_labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                iou_threshold: float = 0.5, class_aware: bool = True,
                gt_taken: Tensor | None = None, pred_taken: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(pred_to_gt (D,), gt_to_pred (G,))`` long, ``-1`` where unmatched.

    ``class_aware=False`` lets a box match ground truth of another class (how the confusion
    matrix finds a right box with a wrong label). ``gt_taken`` / ``pred_taken`` (bool) mark boxes
    already matched in an earlier pass, which this pass leaves alone.
    """
    d, g = len(pred_labels), len(gt_labels)
    pred_to_gt = torch.full((d,), -1, dtype=torch.long)
    gt_to_pred = torch.full((g,), -1, dtype=torch.long)
    if d == 0 or g == 0:
        return pred_to_gt, gt_to_pred
    iou = box_iou(pred_boxes.double().reshape(-1, 4), gt_boxes.double().reshape(-1, 4))  # (D, G)
    if class_aware:
        iou = torch.where(pred_labels.reshape(-1, 1) == gt_labels.reshape(1, -1), iou, torch.full_like(iou, -1.0))
    taken = gt_taken.clone() if gt_taken is not None else torch.zeros(g, dtype=torch.bool)
    skip = pred_taken if pred_taken is not None else torch.zeros(d, dtype=torch.bool)
    order = torch.sort(pred_scores.reshape(-1).double(), descending=True, stable=True).indices
    threshold = min(float(iou_threshold), 1 - 1e-10)  # as pycocotools: IoU exactly 1 still matches at 1.0
    for k in order.tolist():
        if skip[k]:
            continue
        row = torch.where(taken, torch.full_like(iou[k], -2.0), iou[k])  # (G,)
        best = int(row.argmax())
        if row[best] >= threshold:
            pred_to_gt[k], gt_to_pred[best] = best, k
            taken[best] = True
    return pred_to_gt, gt_to_pred


def kept(prediction: dict, score_threshold: float) -> dict[str, Tensor]:
    """A detection prediction's boxes scoring ``score_threshold`` or more (ground truth, which has
    no scores, keeps every box), as ``boxes (n, 4)``, ``scores (n,)``, ``labels (n,)``."""
    boxes = torch.as_tensor(prediction["boxes"]).float().reshape(-1, 4)
    labels = torch.as_tensor(prediction["labels"]).long().reshape(-1)
    scores = prediction.get("scores")
    scores = torch.ones(len(labels)) if scores is None else torch.as_tensor(scores).float().reshape(-1)
    keep = (scores >= score_threshold) & (labels >= 0)
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
