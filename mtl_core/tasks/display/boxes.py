"""Showing boxes (kind ``detection``): outlined and labelled in their class colour, inspected by
matching them to the true boxes as COCO does (IoU 0.5, greedy by score; Lin et al., "Microsoft
COCO: Common Objects in Context", ECCV 2014): hits, false boxes and missed objects per image, a
confusion matrix of boxes with a background line, and per-class precision-recall curves.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image
from torchvision.utils import draw_segmentation_masks

from mtl_core.measures.matching import kept, match_boxes
from mtl_core.measures.stats import confusion_from_pairs, labelled, per_sample, pr_curve
from mtl_core.measures.types import COUNT, FLAG, Confusion, Curve, ErrorColumn
from mtl_core.tasks.base import Display, register_display
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


@register_display("detection")
class BoxDisplay(Display):
    """Boxes of the task's classes: ``{"boxes": float (n, 4) xyxy pixels, "scores": (n,), "labels":
    long (n,)}``, most confident first; a ground truth has no ``scores``."""

    draw_order = 20
    fusion = "boxes"
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
        k = len(self.task.class_names)
        names = [self.task.class_name(c) for c in range(k)]
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
        return [confusion_from_pairs(self.title, [*names, "background"], [*names, "background (missed)"], pairs,
                                     unit="boxes", note=f"boxes scoring {score_threshold:.2f} or more, IoU 0.5")]

    def curves(self, predictions, truths, score_threshold: float = 0.3) -> list[Curve]:
        """Precision-recall per class at IoU 0.5 over every decoded box; its AP is the run's
        per-class AP50 (same matching, same 101-point interpolation)."""
        k = len(self.task.class_names)
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
        return [pr_curve(self.task.class_name(c), scores[c], hits[c], num_truth[c], score_threshold)
                for c in range(k) if num_truth[c]]

    def target_to_prediction(self, target: dict[str, Tensor]) -> dict[str, Tensor]:
        """One image's ground truth (padded or not) as ``{"boxes", "labels"}`` with no scores."""
        target = self.task.labels(target)
        labels = target["labels"].reshape(-1).long()
        keep = labels >= 0
        return {"boxes": target["boxes"].reshape(-1, 4).float()[keep], "labels": labels[keep]}

    def summarize(self, prediction: dict[str, Tensor], score_threshold: float = 0.3) -> str:
        """The boxes scoring ``score_threshold`` or more: "2 boxes: star 0.91, circle 0.55"."""
        labels = torch.as_tensor(prediction["labels"]).reshape(-1).tolist()
        scores = prediction.get("scores")
        scored = scores is not None
        scores = torch.as_tensor(scores).reshape(-1).tolist() if scored else [1.0] * len(labels)
        kept = [(self.task.class_name(int(c)), s) for c, s in zip(labels, scores, strict=False) if s >= score_threshold]
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
        names = self.task.class_names
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
        texts = [f"{self.task.class_name(int(c))} {float(s):.2f}" for c, s in zip(pred["labels"], pred["scores"], strict=True)]
        texts += [f"missed {self.task.class_name(int(c))}" for c in gt["labels"][lost]]
        order = pred["scores"].argsort(descending=True).tolist()  # most confident labelled first
        boxes = torch.cat([p_boxes[order], g_boxes])  # (D + M, 4)
        texts = [texts[i] for i in order] + texts[len(order):]
        colours = [p_colours[i] for i in order] + [MISSED] * len(g_boxes)
        return self._labelled(out, boxes, texts, colours) if texts else out  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("hit", hex_colour(HIT)), ("false positive", hex_colour(WRONG)), ("missed", hex_colour(MISSED))]
