"""Evaluate a model on a dataset split: every task's metrics and loss."""
from __future__ import annotations

from typing import Any

import torch

from mtl_core.data.base import cat_batches, collate, select, to_device
from mtl_core.training.builders import autocast


def iterate_batches(dataset, batch_size: int, limit: int | None = None):
    """``(images, targets)`` batches over the first ``limit`` samples, in order."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    max_boxes = getattr(dataset.info, "max_objects", None) or None
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        if hasattr(dataset, "get_batch"):
            yield dataset.get_batch(idx)
        else:
            yield collate([dataset[i] for i in idx], max_boxes)


KEEP_BYTES = 64 * 2**20  # an evaluation split whose images fit in this is made once per run and kept


def split_batches(dataset, batch_size: int) -> list | None:
    """The split's batches, made once, when its images take at most :data:`KEEP_BYTES` (the
    built-in scenes' 512 validation images take 25 MB); ``None`` for a larger split, which is
    read again at every evaluation. A validation split never changes during a run, and drawing or
    decoding it again was a quarter of every evaluation's time in the demo."""
    if not len(dataset):
        return None
    image, _ = dataset[0]
    if len(dataset) * image.numel() * image.element_size() > KEEP_BYTES:
        return None
    return list(iterate_batches(dataset, batch_size))


@torch.no_grad()
def evaluate(model, tasks: dict, dataset, device: torch.device, batch_size: int = 128,
             limit: int | None = None, amp_dtype: torch.dtype | None = None,
             batches: list | None = None) -> dict[str, float]:
    """``{"<task>/<metric>": value, "loss/<task>": value}`` over the split (``batches``: the
    split's batches already made, see :func:`split_batches`)."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[Any]] = {t: [] for t in tasks}
    targets: dict[str, list[Any]] = {t: [] for t in tasks}
    losses: dict[str, float] = {t: 0.0 for t in tasks}
    counts: dict[str, int] = {t: 0 for t in tasks}
    try:
        for images, batch_targets in (batches if batches is not None else iterate_batches(dataset, batch_size, limit)):
            images = images.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                out = model(images)
            b = images.shape[0]
            for t, task in tasks.items():
                o = out[t]
                tgt, valid = task.target_of(batch_targets)
                if valid is not None:  # only the samples that have this task's label
                    o, tgt = select(o, valid.to(images.device)), select(tgt, valid)
                    n = int(valid.sum())
                else:
                    n = b
                if n == 0:
                    continue
                losses[t] += float(task.loss(o, to_device(tgt, device))) * n
                counts[t] += n
                outputs[t].append(to_device(_float(o), "cpu"))
                targets[t].append(to_device(tgt, "cpu"))
    finally:
        model.train(was_training)
    result: dict[str, float] = {}
    for t, task in tasks.items():
        if counts[t] == 0:
            continue
        for k, v in task.metrics(cat_batches(outputs[t]), cat_batches(targets[t])).items():
            result[f"{t}/{k}"] = float(v)
        result[f"loss/{t}"] = losses[t] / counts[t]
    return result


def _float(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _float(v) for k, v in x.items()}
    return x
