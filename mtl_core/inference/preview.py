"""Dataset samples with their ground truth drawn on them, for the dashboard's Setup and Data pages.

Everything returns ``(H, W, 3)`` uint8 numpy arrays, ready for ``st.image``, so the pages never
touch torch. Small procedural images (32-64 px) are enlarged before drawing (nearest, so every
source pixel stays a crisp block) and the targets are moved with them, so that box labels and
legends drawn by the tasks stay legible.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_core.config import ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.data.base import DatasetInfo, Targets
from mtl_core.inference.images import to_numpy_image
from mtl_core.inference.predictor import draw_all
from mtl_core.tasks import TASKS, Task, build_task

DISPLAY_SIZE = 192  # px: the long side previews are enlarged to before drawing

# what each task's ground truth means, for a person browsing the data (see data/base.py)
TASK_DESCRIPTIONS = {
    "classification": "the class of the largest visible object",
    "multilabel": "which classes appear anywhere in the image",
    "detection": "a box and a class for every visible object",
    "segmentation": "a class for every pixel (background is 0)",
    "depth": "the distance from the camera at every pixel",
    "count": "how many objects are visible",
}


def drawable_tasks(info: DatasetInfo, wanted: Sequence[str] | None = None) -> dict[str, Task]:
    """The registered tasks the dataset supplies (restricted to ``wanted`` when given), built for ``info``."""
    names = [t for t in (wanted if wanted is not None else info.tasks) if t in TASKS and t in info.tasks]
    return {t: build_task(t, info) for t in names}


def to_uint8(image: Tensor) -> Tensor:
    """Float ``(3, H, W)`` in ``[0, 1]`` -> uint8 ``(3, H, W)``."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def enlarge(image: Tensor, targets: Targets, size: int = DISPLAY_SIZE) -> tuple[Tensor, Targets]:
    """Scale a sample up by a whole factor so its long side is about ``size``: the image and its
    dense targets with nearest-exact resampling, the boxes by the same factor."""
    h, w = image.shape[-2:]
    factor = max(1, round(size / max(h, w)))
    if factor == 1:
        return image, targets
    big = (h * factor, w * factor)
    image = F.interpolate(image[None].float(), size=big, mode="nearest-exact")[0]  # (3, H', W')
    out: Targets = {}
    for k, v in targets.items():
        if k == "detection" and isinstance(v, dict):
            out[k] = {**v, "boxes": v["boxes"].float() * factor}  # (n, 4) xyxy pixels
        elif isinstance(v, Tensor) and v.dim() >= 2 and tuple(v.shape[-2:]) == (h, w):
            dense = v.reshape(-1, h, w)[None].float()  # (1, C, h, w)
            dense = F.interpolate(dense, size=big, mode="nearest-exact")[0].to(v.dtype)  # (C, H', W')
            out[k] = dense.reshape(*v.shape[:-2], *big)
        else:
            out[k] = v
    return image, out


def overlay(tasks: dict[str, Task], image: Tensor, targets: Targets, show: dict[str, bool] | None = None,
            size: int = DISPLAY_SIZE) -> np.ndarray:
    """One sample (float image, its targets) with the ground truth of ``tasks`` drawn on it."""
    image, targets = enlarge(image, targets, size)
    gt = {t: task.target_to_prediction(targets[t]) for t, task in tasks.items() if t in targets}
    return to_numpy_image(draw_all(tasks, to_uint8(image), gt, show))


def _samples(dataset: Any, indices: Sequence[int]) -> list[tuple[Tensor, Targets]]:
    if hasattr(dataset, "__getitems__"):
        return list(dataset.__getitems__(list(indices)))  # one rendered batch (scenes)
    return [dataset[i] for i in indices]


def preview_samples(cfg: ExperimentConfig, n: int = 4, split: str = "train", augmented: bool = True,
                    draw: int = 0, size: int = DISPLAY_SIZE) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` samples of ``split``, each as ``(original, augmented)`` with the ground truth
    of ``cfg.tasks`` drawn on both, so boxes and masks can be seen to move with the image.

    ``draw`` picks the random augmentation (the same ``draw`` always gives the same pictures);
    with ``augmented=False`` the second picture repeats the first. Raises ConfigError for data or
    augmentation settings that cannot be honoured.
    """
    from mtl_core.data.augment import Augmenter, generator_for

    dataset = build_dataset(cfg.data, split, cfg.seed)
    tasks = drawable_tasks(dataset.info, cfg.tasks)
    augmenter = Augmenter(cfg.augment, cfg.data.image_size) if augmented else None
    out = []
    for i, (image, targets) in enumerate(_samples(dataset, range(min(n, len(dataset))))):
        original = overlay(tasks, image, targets, size=size)
        if augmenter is None:
            out.append((original, original))
            continue
        aug_image, aug_targets = augmenter(image, targets, generator=generator_for(draw, i))
        out.append((original, overlay(tasks, aug_image, aug_targets, size=size)))
    return out


def sample_overlays(cfg: ExperimentConfig, split: str, indices: Sequence[int],
                    show: dict[str, bool] | None = None, size: int = DISPLAY_SIZE) -> list[np.ndarray]:
    """Samples ``indices`` of ``split`` with every supplied task's ground truth drawn (those
    ``show`` maps to False left out); no augmentation."""
    dataset = build_dataset(cfg.data, split, cfg.seed)
    tasks = drawable_tasks(dataset.info)
    return [overlay(tasks, image, targets, show, size) for image, targets in _samples(dataset, indices)]


def sample_captions(cfg: ExperimentConfig, split: str, indices: Sequence[int]) -> list[str]:
    """A one-line summary of each sample's labels, e.g. ``#3 · star · 2 objects``."""
    dataset = build_dataset(cfg.data, split, cfg.seed)
    names = dataset.info.class_names
    out = []
    for i, (_, targets) in zip(indices, _samples(dataset, indices), strict=True):
        parts = [f"#{i}"]
        if "classification" in targets:
            c = int(torch.as_tensor(targets["classification"]).reshape(-1)[0])
            parts.append(names[c] if 0 <= c < len(names) else f"class {c}")
        if "count" in targets:
            k = int(torch.as_tensor(targets["count"]).reshape(-1)[0])
            parts.append(f"{k} object{'s' if k != 1 else ''}")
        out.append(" · ".join(parts))
    return out


def dataset_summary(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a person browsing the data needs to know: name, classes, split sizes, and each
    supplied task with its title, whether it is registered, and what its label means."""
    splits = {s: build_dataset(cfg.data, s, cfg.seed) for s in ("train", "val", "test")}
    info = splits["val"].info
    tasks = []
    for t in info.tasks:
        cls = TASKS.get(t) if t in TASKS else None
        tasks.append({"name": t, "title": (getattr(cls, "title", "") or t) if cls else t,
                      "available": cls is not None, "description": TASK_DESCRIPTIONS.get(t, "")})
    return {"name": info.name, "class_names": list(info.class_names), "image_size": info.image_size,
            "max_objects": info.max_objects, "sizes": {s: len(d) for s, d in splits.items()}, "tasks": tasks}


__all__ = ["DISPLAY_SIZE", "TASK_DESCRIPTIONS", "dataset_summary", "drawable_tasks", "enlarge", "overlay",
           "preview_samples", "sample_captions", "sample_overlays", "to_uint8"]
