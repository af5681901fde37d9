"""Semantic segmentation: one class per pixel, 0 = background, ``c + 1`` = class ``c``, 255 = ignore.

A dataset whose classes cover every pixel and have no background class (NYUv2's 13 classes,
Cityscapes' 7 or 19 as the multi-task benchmarks ship them) says so with the spec option
``background: 0``: label ``c`` is then class ``c`` and the head has one output per class.

Per-pixel cross-entropy on logits upsampled to the label's size, and mean intersection over
union from a confusion matrix, as in Long et al., "Fully Convolutional Networks for Semantic
Segmentation" (CVPR 2015) and the PASCAL VOC evaluation (Everingham et al., IJCV 2010).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.tasks.base import Task, register_kind, register_task

IGNORE_INDEX = 255
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
@register_kind("segmentation")
class Segmentation(Task):
    """Background + ``K`` classes per pixel (or ``K`` classes alone, with the spec option
    ``background: 0``); metrics ``miou`` (primary) and ``pixel_acc``.

    Convention: IoU is computed per class, background included, over all evaluated pixels
    together (one confusion matrix for the whole set, not a mean over images), and ``miou`` is
    the mean over the classes that occur in the targets or in the predictions; a class absent
    from both is left out rather than counted as 0 or 1. Pixels labelled 255 are ignored, both
    in the loss and in the metrics (a prediction there counts for nothing). With no labelled
    pixel at all (empty set, or everything 255) both metrics are 0.0 and the loss is 0.
    """

    kind = "segmentation"
    primary = "miou"
    higher_is_better = True
    title = "Segmentation"
    description = "a class for every pixel (background is 0)"

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        super().__init__(info, spec, name)
        # label value of class 0: 1 after a background label 0, 0 when the classes cover every pixel
        self.offset = 1 if self.option("background", 1.0) else 0
        self.num_outputs = len(self.class_names) + self.offset

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
        """The ``(K+1, K+1)`` confusion matrix of a whole set (``(K, K)`` without a background),
        computed a chunk of images at a time."""
        labels = label_map(targets)  # (N, H, W)
        conf = torch.zeros(self.num_outputs, self.num_outputs, dtype=torch.long, device=labels.device)
        for start in range(0, labels.shape[0], CHUNK):
            pred = self.predict_labels(outputs[start:start + CHUNK], labels.shape[-2:]).to(labels.device)
            conf += confusion_matrix(pred, labels[start:start + CHUNK], self.num_outputs)
        return conf

    def metrics(self, outputs: Tensor, targets: Tensor) -> dict[str, float]:
        miou, pixel_acc = miou_from_confusion(self.confusion(outputs, targets))
        return {"miou": miou, "pixel_acc": pixel_acc}

    def decode(self, output: Tensor, image_size: tuple[int, int] | None = None,
               with_probs: bool = False) -> list[dict[str, Any]]:
        """``[{"mask": long (H, W)}]`` per image at ``image_size`` (default: the dataset's), on the
        CPU; ``with_probs`` adds ``"probs"``: float ``(K+1, H, W)`` softmax probabilities."""
        size = tuple(image_size or self.info.hw)
        logits = upsample(output.detach()[None] if output.dim() == 3 else output.detach(), size)  # (B, K+1, H, W)
        masks = logits.argmax(dim=1).cpu()  # (B, H, W)
        preds = []
        for i in range(logits.shape[0]):
            pred: dict[str, Any] = {"mask": masks[i]}
            if with_probs:
                pred["probs"] = logits[i].softmax(dim=0).cpu()
            preds.append(pred)
        return preds
