"""The one sample type every dataset yields, and how samples become batches.

A sample is ``(image, targets)``:

- ``image``: float tensor ``(3, H, W)`` in ``[0, 1]``, not normalised (the model normalises);
- ``targets``: a dict with one entry per task the dataset supplies:

  ==================  ===============================================================
  ``classification``  long scalar: class of the largest visible object
  ``multilabel``      float ``(K,)``: 1 where the class is present
  ``detection``       ``{"boxes": float (n, 4) xyxy pixels, "labels": long (n,)}``
  ``segmentation``    long ``(H, W)``: 0 background, ``c + 1`` for class ``c``, 255 ignore
  ``depth``           float ``(1, H, W)``: distance from the camera (``0`` = no label)
  ``normals``         float ``(3, H, W)``: unit surface normals, ``x`` right, ``y`` up, ``z``
                      towards the camera (all ``0`` = no label)
  ``count``           long scalar: number of visible objects
  ==================  ===============================================================

A sample whose label for some task is missing (a real dataset where not every image has every
annotation) carries ``targets["valid"] = {task: False}``; that task's loss skips the sample
(masked), the other tasks still learn from it. A placeholder of the right shape stands in for
the missing target so batches stack.

A batch (``collate``) stacks these along a new first dimension; detection is padded to
``M`` boxes per image (``boxes (B, M, 4)``, ``labels (B, M)`` with ``-1`` for padding), so a
whole batch is plain tensors that can move to a device in one go.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from mtl_core.config import TaskSpec, size_hw
from mtl_core.registry import Registry

Targets = dict[str, object]
Sample = tuple[Tensor, Targets]


@dataclass(frozen=True)
class DatasetInfo:
    """What a task needs to know about the data it is trained on."""

    name: str
    class_names: tuple[str, ...]
    image_size: int | tuple[int, int]  # the model's input: one number for a square, else (height, width)
    tasks: tuple[str, ...]  # the tasks this dataset can supply
    max_objects: int = 0
    depth_max: float = 1.0
    # what the dataset knows of the tasks it supplies beyond the built-in names: a label table's
    # column -> its kind, classes and options (inferred from the column or declared beside it)
    specs: dict[str, TaskSpec] = field(default_factory=dict)

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` of the model's input."""
        return size_hw(self.image_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (a checkpoint keeps them, so a run predicts without its data)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        """Inverse of :meth:`to_dict`; a checkpoint written before ``specs`` existed reads as none."""
        size = d["image_size"]
        specs = {k: TaskSpec(**{**v, "classes": tuple(v.get("classes", ())), "options": dict(v.get("options", {}))})
                 for k, v in (d.get("specs") or {}).items()}
        return cls(name=d["name"], class_names=tuple(d["class_names"]), image_size=tuple(size) if isinstance(size, list) else size,
                   tasks=tuple(d["tasks"]), max_objects=int(d.get("max_objects", 0)),
                   depth_max=float(d.get("depth_max", 1.0)), specs=specs)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def pad_detection(items: list[dict[str, Tensor]], max_boxes: int | None = None) -> dict[str, Tensor]:
    """Pad per-image ``boxes``/``labels`` to ``(B, M, 4)`` / ``(B, M)``; labels ``-1`` pad."""
    m = max([len(it["labels"]) for it in items] + [max_boxes or 0, 1])
    boxes = torch.zeros(len(items), m, 4)
    labels = torch.full((len(items), m), -1, dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it["labels"])
        if n:
            boxes[i, :n] = it["boxes"].float()
            labels[i, :n] = it["labels"].long()
    return {"boxes": boxes, "labels": labels}


def unpad_detection(det: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """Inverse of :func:`pad_detection`: a list of ``{"boxes", "labels"}`` per image."""
    out = []
    for boxes, labels in zip(det["boxes"], det["labels"]):
        keep = labels >= 0
        out.append({"boxes": boxes[keep], "labels": labels[keep]})
    return out


def collate(samples: list[Sample], max_boxes: int | None = None) -> tuple[Tensor, Targets]:
    """Stack samples into a batch (see the module docstring for the layout)."""
    images = torch.stack([s[0] for s in samples])
    targets: Targets = {}
    keys = list(dict.fromkeys(k for s in samples for k in s[1]))
    for key in keys:
        if key == "valid":
            tasks = [k for k in keys if k != "valid"]
            targets[key] = {t: torch.tensor([bool(s[1].get("valid", {}).get(t, True)) for s in samples]) for t in tasks}
            continue
        values = [s[1][key] for s in samples]
        if isinstance(values[0], dict) and "boxes" in values[0]:  # a detection target, whatever its task is named
            targets[key] = pad_detection(values, max_boxes)  # type: ignore[arg-type]
        else:
            targets[key] = torch.stack([torch.as_tensor(v) for v in values])
    return images, targets


def select(obj: object, mask: Tensor) -> object:
    """The rows of a batch entry (a tensor or a dict of tensors) where ``mask`` is true."""
    if isinstance(obj, Tensor):
        return obj[mask]
    if isinstance(obj, dict):
        return {k: select(v, mask) for k, v in obj.items()}
    return obj


def cat_batches(parts: list[object]) -> object:
    """Concatenate per-batch tensors (or dicts of them) along the batch dimension."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: cat_batches([p[k] for p in parts]) for k in first}  # type: ignore[index]
    if isinstance(first, Tensor) and first.dim() >= 2 and any(p.shape[1:] != first.shape[1:] for p in parts):
        # padded detection with a different M per batch: pad to the widest
        m = max(p.shape[1] for p in parts)
        fill = -1 if first.dtype == torch.long else 0
        parts = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, m - p.shape[1]), value=fill) for p in parts]
    return torch.cat(parts)  # type: ignore[arg-type]


def to_device(obj: object, device: torch.device | str, non_blocking: bool = False) -> object:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: to_device(v, device, non_blocking) for k, v in obj.items()}
    return obj


DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register

SPLITS = ("train", "val", "test")


def build_dataset(cfg, split: str, seed: int = 0):
    """The dataset named by ``cfg.dataset`` for one split. ``cfg`` is a
    :class:`~mtl_core.config.DataConfig`, or a whole :class:`~mtl_core.config.ExperimentConfig`,
    whose ``task_specs`` then reach a dataset that reads them (a label table, where a config may
    declare the kind of a column that could be read two ways).

    Every dataset has ``info`` (:class:`DatasetInfo`), ``__len__`` and ``__getitem__`` returning a
    :data:`Sample`; fast ones also have ``get_batch(indices) -> (images, targets)`` (collated).
    """
    data, specs, tasks = (cfg.data, cfg.task_specs, cfg.tasks) if hasattr(cfg, "task_specs") else (cfg, {}, None)
    cls = DATASETS.get(data.dataset, "data.dataset")
    if getattr(cls, "reads_specs", False):
        return cls(data, split, seed, specs=specs, tasks=tasks)
    return cls(data, split, seed)
