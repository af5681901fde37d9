"""Showing a class per pixel (kind ``segmentation``): each class's pixels tinted with its colour,
a legend of the classes present, wrongly labelled pixels in magenta; inspected by each image's
mean IoU and share of wrong pixels, and a confusion matrix of the set's pixels (as the PASCAL VOC
evaluation counts them, Everingham et al., IJCV 2010).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import draw_segmentation_masks

from mtl_core.measures.stats import confusion_from_pairs
from mtl_core.measures.types import FLAG, FRACTION, Confusion, ErrorColumn
from mtl_core.tasks.base import Display, percent, register_display
from mtl_core.tasks.drawing import WRONG_PIXEL, blend, colour_for, hex_colour, legend
from mtl_core.tasks.segmentation import IGNORE_INDEX, class_counts, confusion_matrix, miou_from_confusion

FAILED_IOU = 0.5  # an image whose mean IoU is below this counts as failed in the error browser


@register_display("segmentation")
class MaskDisplay(Display):
    """A label map: ``{"mask": long (H, W)}``, 0 the background, ``c + 1`` the task's class ``c``,
    255 ignored (a ground truth only); without a background (the task's ``offset`` 0), ``c`` is
    class ``c``."""

    draw_order = 10
    draws_legend = True
    fusion = "dense_softmax"
    error_columns = (
        ErrorColumn("failed", f"IoU below {FAILED_IOU}", FLAG),
        ErrorColumn("iou", "IoU", FRACTION, worse="low",
                    help="mean IoU over the classes in this image's truth or prediction, background included"),
        ErrorColumn("pixel_error", "wrong pixels", FRACTION, help="share of labelled pixels with the wrong class"),
    )

    @property
    def offset(self) -> int:
        """The label of the task's first class: 1 after a background 0, else 0."""
        return int(getattr(self.task, "offset", 1))

    def size(self) -> int:
        """Labels in a mask: the background (if any) and the task's classes."""
        return len(self.task.class_names) + self.offset

    def label_name(self, label: int) -> str:
        """The name of mask label ``label`` (0 is the background when there is one)."""
        return self.task.class_name(label - self.offset)

    def colour(self, label: int) -> tuple[int, int, int]:
        """The overlay colour of mask label ``label`` (its class's, whatever the offset)."""
        return colour_for(label - self.offset)

    def sample_confusions(self, predictions, truths) -> Tensor:
        """``(N, K+1, K+1)`` per-sample pixel confusion matrices (zeros for an unlabelled sample)."""
        k = self.size()
        out = torch.zeros(len(predictions), k, k, dtype=torch.long)
        for i, (p, t) in enumerate(zip(predictions, truths, strict=True)):
            if t is None:
                continue
            truth = torch.as_tensor(t["mask"]).long()
            pred = torch.as_tensor(p["mask"]).long()
            if pred.shape != truth.shape:  # nearest, so labels stay labels
                pred = F.interpolate(pred[None, None].float(), size=truth.shape[-2:], mode="nearest")[0, 0].long()
            out[i] = confusion_matrix(pred.clamp(0, k - 1), truth, k)
        return out

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        out: dict[str, list] = {c.name: [] for c in self.error_columns}
        for t, conf in zip(truths, self.sample_confusions(predictions, truths), strict=True):
            if t is None or conf.sum() == 0:
                for values in out.values():
                    values.append(float("nan"))
                continue
            iou, acc = miou_from_confusion(conf)
            out["failed"].append(float(iou < FAILED_IOU))
            out["iou"].append(iou)
            out["pixel_error"].append(1.0 - acc)
        return out

    def confusions(self, predictions, truths, score_threshold: float = 0.3) -> list[Confusion]:
        """Pixels of the whole set: rows the true class, columns the predicted, background first;
        a cell lists the samples with pixels in it, the most pixels first."""
        names = ["background"] * self.offset + [self.label_name(c) for c in range(self.offset, self.size())]
        per_sample = self.sample_confusions(predictions, truths)  # (N, K+1, K+1)
        n, r, c = per_sample.nonzero(as_tuple=True)
        pairs = list(zip(r.tolist(), c.tolist(), n.tolist(), per_sample[n, r, c].tolist(), strict=True))
        return [confusion_from_pairs(self.title, names, names, pairs, unit="pixels")]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3, show_legend: bool = True) -> Tensor:
        """Each class's pixels tinted with its colour at ``opacity``; background and ignored pixels
        untouched; a legend of the classes present at the bottom-right. ``score_threshold`` does
        not apply (every pixel has a class)."""
        mask = prediction["mask"].to(image.device).long()  # (H, W)
        if mask.shape[-2:] != image.shape[-2:]:
            mask = F.interpolate(mask[None, None].float(), size=image.shape[-2:], mode="nearest")[0, 0].long()
        present = [int(c) for c in torch.unique(mask).tolist() if self.offset <= c < self.size()]
        if not present:
            return image.clone()
        masks = torch.stack([mask == c for c in present])  # (n, H, W)
        drawn = draw_segmentation_masks(image, masks, alpha=float(opacity), colors=[self.colour(c) for c in present])
        # torchvision blends every pixel in float and truncates, which can shift unmasked pixels by 1
        out = torch.where(masks.any(dim=0)[None], drawn, image)  # (3, H, W)
        if show_legend:
            out = legend(out, [(self.label_name(c), self.colour(c)) for c in present], corner="bottom-right")
        return out

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """The image greyed and dimmed, so the colours that follow stand out; pixels labelled right
        faintly tinted with their class colour (background left grey); pixels labelled wrong (the
        prediction differs from the truth, pixels the truth ignores left out) solid magenta."""
        size = image.shape[-2:]
        pred, true = (self._at(m["mask"], size).to(image.device) for m in (prediction, truth))  # (H, W) each
        grey = (image.float().mean(dim=0, keepdim=True) * 0.6).round().to(torch.uint8).expand(3, -1, -1)  # (3, H, W)
        out = grey.clone()
        labelled = true != IGNORE_INDEX
        for c in [int(c) for c in torch.unique(true[labelled & (pred == true)]).tolist() if c >= self.offset]:
            tint = torch.tensor(self.colour(c), dtype=torch.uint8, device=image.device).view(3, 1, 1).expand_as(out)
            out = blend(out, tint, 0.35, mask=(true == c) & (pred == c))
        wrong = labelled & (pred != true)  # (H, W)
        magenta = torch.tensor(WRONG_PIXEL, dtype=torch.uint8, device=image.device).view(3, 1, 1)
        return torch.where(wrong[None], magenta, out)  # (3, H, W)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("wrong pixel", hex_colour(WRONG_PIXEL))]

    @staticmethod
    def _at(mask: Any, size: tuple[int, int]) -> Tensor:
        """A label mask ``(H, W)`` at ``size``, nearest (labels stay labels)."""
        mask = torch.as_tensor(mask).long()
        mask = mask[0] if mask.dim() == 3 else mask
        if tuple(mask.shape[-2:]) != tuple(size):
            mask = F.interpolate(mask[None, None].float(), size=tuple(size), mode="nearest")[0, 0].long()
        return mask

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """The classes present, largest area first, with their share of the image."""
        counts = class_counts(prediction["mask"])
        present = [c for c in range(self.offset, min(len(counts), self.size())) if counts[c] > 0]
        if not present:
            return "background only" if self.offset else "nothing labelled"
        total = max(1, sum(counts))
        present.sort(key=lambda c: -counts[c])
        return ", ".join(f"{self.label_name(c)} {percent(counts[c] / total)}" for c in present)

    def legend(self, prediction: dict[str, Any]) -> list[tuple[str, str]]:
        """Every class present in the mask, in its overlay colour."""
        counts = class_counts(prediction["mask"])
        return [(self.label_name(c), "#{:02x}{:02x}{:02x}".format(*self.colour(c)))
                for c in range(self.offset, min(len(counts), self.size())) if counts[c] > 0]

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        mask = torch.as_tensor(self.task.labels(torch.as_tensor(target))).long()
        return {"mask": mask[0] if mask.dim() == 3 else mask}
