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
from torch import Tensor

from mtl_core.config import ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.data.augment import Augmenter, generator_for
from mtl_core.data.base import DatasetInfo, Targets
from mtl_core.errors import ConfigError
from mtl_core.inference.images import to_numpy_image
from mtl_core.inference.samples import ground_truth
from mtl_core.tasks import Task, build_task, supported_tasks, target_kinds
from mtl_core.tasks.drawing import draw_all
from mtl_core.views.render import enlarge

CLASS_KINDS = ("classification", "multilabel", "binary", "detection", "segmentation")  # kinds whose classes are worth a count
DISPLAY_SIZE = 192  # px: the long side previews are enlarged to before drawing


def _built(name: str, info: DatasetInfo) -> Task | None:
    """Task ``name`` on ``info``, or None when its kind is not registered here (a plugin not
    loaded, a kind this install lacks): the data can still be browsed without it."""
    try:
        return build_task(name, info)
    except ConfigError:
        return None


def drawable_tasks(info: DatasetInfo, wanted: Sequence[str] | None = None) -> dict[str, Task]:
    """The registered tasks whose labels the dataset supplies (restricted to ``wanted`` when given),
    built for ``info``; a task whose kind is not registered here is left out."""
    names = [t for t in supported_tasks(info.tasks, info.specs) if wanted is None or t in wanted]
    if wanted is not None:
        names.sort(key=list(wanted).index)
    return {t: task for t in names if (task := _built(t, info)) is not None}


def to_uint8(image: Tensor) -> Tensor:
    """Float ``(3, H, W)`` in ``[0, 1]`` -> uint8 ``(3, H, W)``."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def overlay(tasks: dict[str, Task], image: Tensor, targets: Targets, show: dict[str, bool] | None = None,
            size: int = DISPLAY_SIZE) -> np.ndarray:
    """One sample (float image, its targets) with the ground truth of ``tasks`` drawn on it, enlarged
    by a whole factor so its long side is about ``size`` (labels stay legible on a 32 px sample).
    Enlarged, the labels of the whole image (class, count, classes present) go in a band above
    it, so they cover none of its objects (see :func:`~mtl_core.tasks.drawing.draw_all`)."""
    factor = max(1, round(size / max(image.shape[-2:])))
    big, truth = enlarge(to_uint8(image), ground_truth(tasks, targets), factor=factor)
    return to_numpy_image(draw_all(tasks, big, truth, show, band=factor > 1))


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
    dataset = build_dataset(cfg, split, cfg.seed)
    tasks = drawable_tasks(dataset.info, cfg.tasks)
    augmenter = Augmenter(cfg.augment, cfg.data.image_size) if augmented else None
    if augmenter is not None:
        augmenter.kinds = target_kinds(tasks)
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
    dataset = build_dataset(cfg, split, cfg.seed)
    tasks = drawable_tasks(dataset.info)
    return [overlay(tasks, image, targets, show, size) for image, targets in _samples(dataset, indices)]


def sample_captions(cfg: ExperimentConfig, split: str, indices: Sequence[int]) -> list[str]:
    """A one-line summary of each sample's labels from the tasks' captions, e.g. ``#3 · star · 2 objects``."""
    dataset = build_dataset(cfg, split, cfg.seed)
    tasks = drawable_tasks(dataset.info)
    out = []
    for i, (_, targets) in zip(indices, _samples(dataset, indices), strict=True):
        words = [tasks[t].display.caption(p) for t, p in ground_truth(tasks, targets).items()]
        out.append(" · ".join([f"#{i}", *(w for w in words if w)]))
    return out


def dataset_summary(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a person browsing the data needs to know: name, classes, split sizes, and each
    supplied task with its title, whether it is registered, and what its label means."""
    splits = {s: build_dataset(cfg, s, cfg.seed) for s in ("train", "val", "test")}
    info = splits["val"].info
    tasks, covered = [], set()
    for name in supported_tasks(info.tasks, info.specs):
        task = _built(name, info)
        if task is None:  # its kind is not registered here: listed below as a label no task learns from
            continue
        covered.add(task.target_name())
        counts = {s: d.label_count(name) for s, d in splits.items()} if hasattr(splits["val"], "label_count") else \
            {s: len(d) for s, d in splits.items()}
        tasks.append({"name": name, "title": task.title, "kind": task.kind, "available": True,
                      "description": task.description, "labels": counts,
                      "classes": len(task.class_names) if task.kind in CLASS_KINDS else None})
    for target in info.tasks:  # a label no task learns from (yet)
        if target not in covered:
            tasks.append({"name": target, "title": target, "kind": "", "available": False, "description": "",
                          "labels": {}, "classes": None})
    return {"name": info.name, "class_names": list(info.class_names), "image_size": info.image_size,
            "max_objects": info.max_objects, "sizes": {s: len(d) for s, d in splits.items()}, "tasks": tasks}


__all__ = ["DISPLAY_SIZE", "dataset_summary", "drawable_tasks", "overlay",
           "preview_samples", "sample_captions", "sample_overlays", "to_uint8"]
