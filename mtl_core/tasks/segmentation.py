"""Semantic segmentation: one class per pixel, 0 = background, ``c + 1`` = class ``c``, 255 = ignore.

Per-pixel cross-entropy on logits upsampled to the label's size, and mean intersection over
union from a confusion matrix, as in Long et al., "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015) and the PASCAL VOC evaluation (Everingham et al., IJCV 2010).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import draw_segmentation_masks

from mtl_core.data.base import DatasetInfo
from mtl_core.measures.stats import confusion_from_pairs
from mtl_core.measures.types import FLAG, FRACTION, Confusion, ErrorColumn
from mtl_core.tasks.base import Task, percent, register_task
from mtl_core.tasks.drawing import WRONG_PIXEL, blend, colour_for, hex_colour, legend

IGNORE_INDEX = 255
FAILED_IOU = 0.5  # an image whose mean IoU is below this counts as failed in the error browser
CHUNK = 32  # images upsampled at once in metrics, so a large eval set never needs all logits at full size


def dense_head(channels: int, outputs: int) -> nn.Module:
    """A light conv head: 3x3 conv-BN-ReLU then a 1x1 classifier, ``(B, C, h, w)`` -> ``(B, outputs, h, w)``."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        nn.Conv2d(channels, outputs, 1),
    )


def upsample(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size``, in float32; a no-op at the same size."""
    x = x.float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def label_map(target: Tensor) -> Tensor:
    """``(B, H, W)`` long labels from ``(B, H, W)`` or ``(B, 1, H, W)``."""
    return (target[:, 0] if target.dim() == 4 else target).long()


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(K, K)`` int64 counts, rows = target class, columns = predicted; pixels labelled
    ``IGNORE_INDEX`` (or any label outside ``[0, K)``) are left out."""
    valid = (target >= 0) & (target < num_classes)
    index = target[valid] * num_classes + pred[valid]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_counts(mask: Any) -> list[int]:
    """Pixels per label of a mask (label 255, "ignore", counts as 0); bincount, not
    ``torch.unique``, which sorts and is ~10x slower on a photo-sized mask."""
    m = torch.as_tensor(mask).reshape(-1)
    if m.numel() == 0:
        return []
    counts = torch.bincount(m.long().clamp(0, IGNORE_INDEX)).tolist()
    if len(counts) > IGNORE_INDEX:
        counts[IGNORE_INDEX] = 0
    return counts


def miou_from_confusion(conf: Tensor) -> tuple[float, float]:
    """``(mIoU, pixel accuracy)`` from a confusion matrix (see :class:`Segmentation` for the convention)."""
    conf = conf.double()
    total = conf.sum()
    if total == 0:
        return 0.0, 0.0
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp  # predicted + labelled - both
    present = union > 0  # classes in the targets or in the predictions
    return float((tp[present] / union[present]).mean()), float(tp.sum() / total)


@register_task("segmentation")
class Segmentation(Task):
    """Background + ``K`` classes per pixel; metrics ``miou`` (primary) and ``pixel_acc``.

    Convention: IoU is computed per class, background included, over all evaluated pixels
    together (one confusion matrix for the whole set, not a mean over images), and ``miou`` is
    the mean over the classes that occur in the targets or in the predictions; a class absent
    from both is left out rather than counted as 0 or 1. Pixels labelled 255 are ignored, both
    in the loss and in the metrics (a prediction there counts for nothing). With no labelled
    pixel at all (empty set, or everything 255) both metrics are 0.0 and the loss is 0.
    """

    primary = "miou"
    higher_is_better = True
    title = "Segmentation"
    description = "a class for every pixel (background is 0)"
    draw_order = 10
    draws_legend = True
    fusion = "dense_softmax"

    def __init__(self, info: DatasetInfo) -> None:
        super().__init__(info)
        self.num_outputs = info.num_classes + 1  # 0 is background

    def head(self, channels: int, stride: int = 1) -> nn.Module:
        return dense_head(channels, self.num_outputs)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        labels = label_map(target)  # (B, H, W)
        logits = upsample(output, labels.shape[-2:])  # (B, K+1, H, W)
        # sum / count instead of the default mean: an all-ignored batch gives 0, not NaN
        total = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (labels != IGNORE_INDEX).sum().clamp(min=1)

    def predict_labels(self, output: Tensor, size: tuple[int, int]) -> Tensor:
        """``(B, H, W)`` argmax labels at ``size``."""
        return upsample(output, size).argmax(dim=1)

    def confusion(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """The ``(K+1, K+1)`` confusion matrix of a whole set, computed a chunk of images at a time."""
        labels = label_map(targets)  # (N, H, W)
        conf = torch.zeros(self.num_outputs, self.num_outputs, dtype=torch.long, device=labels.device)
        for start in range(0, labels.shape[0], CHUNK):
            pred = self.predict_labels(outputs[start:start + CHUNK], labels.shape[-2:]).to(labels.device)
            conf += confusion_matrix(pred, labels[start:start + CHUNK], self.num_outputs)
        return conf

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        miou, pixel_acc = miou_from_confusion(self.confusion(outputs, targets))
        return {"miou": miou, "pixel_acc": pixel_acc}

    # ---- inspection ----------------------------------------------------------------------
    error_columns = (
        ErrorColumn("failed", f"IoU below {FAILED_IOU}", FLAG),
        ErrorColumn("iou", "IoU", FRACTION, worse="low",
                    help="mean IoU over the classes in this image's truth or prediction, background included"),
        ErrorColumn("pixel_error", "wrong pixels", FRACTION, help="share of labelled pixels with the wrong class"),
    )

    def sample_confusions(self, predictions, truths) -> Tensor:
        """``(N, K+1, K+1)`` per-sample pixel confusion matrices (zeros for an unlabelled sample)."""
        k = self.num_outputs
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
        names = ["background", *(self.class_name(c) for c in range(1, self.num_outputs))]
        per_sample = self.sample_confusions(predictions, truths)  # (N, K+1, K+1)
        n, r, c = per_sample.nonzero(as_tuple=True)
        pairs = list(zip(r.tolist(), c.tolist(), n.tolist(), per_sample[n, r, c].tolist(), strict=True))
        return [confusion_from_pairs("Segmentation", names, names, pairs, unit="pixels")]

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None,
               with_probs: bool = False) -> list[dict[str, Any]]:
        """``[{"mask": long (H, W)}]`` per image at ``image_size`` (default: the dataset's), on the
        CPU; ``with_probs`` adds ``"probs"``: float ``(K+1, H, W)`` softmax probabilities."""
        size = tuple(image_size or (self.info.image_size, self.info.image_size))
        logits = upsample(output.detach()[None] if output.dim() == 3 else output.detach(), size)  # (B, K+1, H, W)
        masks = logits.argmax(dim=1).cpu()  # (B, H, W)
        preds = []
        for i in range(logits.shape[0]):
            pred: dict[str, Any] = {"mask": masks[i]}
            if with_probs:
                pred["probs"] = logits[i].softmax(dim=0).cpu()
            preds.append(pred)
        return preds

    def class_name(self, label: int) -> str:
        """The name of mask label ``label`` (1-based: 0 is background)."""
        return super().class_name(label - 1)

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3, show_legend: bool = True) -> Tensor:
        """Each class's pixels tinted with its colour at ``opacity``; background and ignored pixels
        untouched; a legend of the classes present at the bottom-right. ``score_threshold`` does
        not apply (every pixel has a class)."""
        mask = prediction["mask"].to(image.device).long()  # (H, W)
        if mask.shape[-2:] != image.shape[-2:]:
            mask = F.interpolate(mask[None, None].float(), size=image.shape[-2:], mode="nearest")[0, 0].long()
        present = [int(c) for c in torch.unique(mask).tolist() if 1 <= c < self.num_outputs]
        if not present:
            return image.clone()
        masks = torch.stack([mask == c for c in present])  # (n, H, W)
        drawn = draw_segmentation_masks(image, masks, alpha=float(opacity), colors=[colour_for(c - 1) for c in present])
        # torchvision blends every pixel in float and truncates, which can shift unmasked pixels by 1
        out = torch.where(masks.any(dim=0)[None], drawn, image)  # (3, H, W)
        if show_legend:
            out = legend(out, [(self.class_name(c), colour_for(c - 1)) for c in present], corner="bottom-right")
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
        for c in [int(c) for c in torch.unique(true[labelled & (pred == true)]).tolist() if c >= 1]:
            tint = torch.tensor(colour_for(c - 1), dtype=torch.uint8, device=image.device).view(3, 1, 1).expand_as(out)
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
        present = [c for c in range(1, len(counts)) if counts[c] > 0]
        if not present:
            return "background only"
        total = max(1, sum(counts))
        present.sort(key=lambda c: -counts[c])
        return ", ".join(f"{self.class_name(c)} {percent(counts[c] / total)}" for c in present)

    def legend(self, prediction: dict[str, Any]) -> list[tuple[str, str]]:
        """Every class present in the mask, in its overlay colour."""
        counts = class_counts(prediction["mask"])
        return [(self.class_name(c), "#{:02x}{:02x}{:02x}".format(*colour_for(c - 1)))
                for c in range(1, len(counts)) if counts[c] > 0]

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        mask = torch.as_tensor(target).long()
        return {"mask": mask[0] if mask.dim() == 3 else mask}
