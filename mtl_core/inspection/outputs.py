"""A run's per-sample outputs on a split, computed once per checkpoint and kept beside it.

:func:`split_outputs` runs the checkpoint's model over the split once, decodes every task's
prediction, takes every sample's ground truth in the same format, and saves images,
predictions, truths and the error table at the default score threshold to
``<checkpoint>.inspect-<split>.pt`` (written atomically, read back with ``weights_only=True``).
Opening the same checkpoint's split again reads that file: the error browser of a 512-sample
split opens without running the model. A file made for an older version of the checkpoint (its
size or modification time changed), by another format, or for other samples is rebuilt.
"""
from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mtl_core.errors import CheckpointError, MTLError
from mtl_core.inference.predictor import INFER_LOCK, Predictor
from mtl_core.inference.samples import run_dataset
from mtl_core.inspection.packing import pack, unpack, unpack_all
from mtl_core.training.checkpoint import atomic_write_bytes
from mtl_core.training.evaluation import iterate_batches

FORMAT = "mtl-inspect-1"
DEFAULT_THRESHOLD = 0.3  # the Predict page's default score threshold
BATCH = 64
_BUILD_LOCK = threading.Lock()  # two viewers opening one split wait for one build, not two


def cache_path(checkpoint: str | os.PathLike, split: str, limit: int | None = None) -> Path:
    """``<checkpoint>.inspect-<split>.pt`` (``-first<N>`` for the first ``limit`` samples only, so a
    headless look at a few samples never replaces the whole split's file the dashboard reads)."""
    path = Path(checkpoint)
    part = "" if limit is None else f"-first{int(limit)}"
    return path.with_name(f"{path.name}.inspect-{split}{part}.pt")


def _stamp(checkpoint: Path) -> list[int]:
    st = checkpoint.stat()
    return [int(st.st_size), int(st.st_mtime_ns)]


@dataclass
class SplitOutputs:
    """Images, predictions and truths of every sample of one split, as one model saw them.

    ``indices[j]`` is the dataset index of position ``j``; ``predictions`` and ``truths`` are
    packed per task (:mod:`~mtl_core.inspection.packing`). ``tasks`` are the run's task objects.
    """

    run_config: Any
    split: str
    step: int
    tasks: dict[str, Any]
    images: Tensor  # (N, 3, H, W) uint8
    indices: list[int]
    predictions: dict[str, dict[str, Any]]
    truths: dict[str, dict[str, Any]]
    errors_at: dict[float, dict[str, list]] = field(default_factory=dict)  # score threshold -> table
    _lists: dict[tuple[str, str], list] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.indices)

    def image(self, j: int) -> Tensor:
        return self.images[j]

    def prediction(self, j: int) -> dict[str, Any]:
        return {t: unpack(self.predictions[t], j) for t in self.tasks}

    def truth(self, j: int) -> dict[str, Any]:
        """The sample's ground truth per task it is labelled for."""
        return {t: v for t in self.tasks if (v := unpack(self.truths[t], j)) is not None}

    def all_predictions(self, task: str) -> list[dict[str, Any]]:
        key = ("pred", task)
        if key not in self._lists:
            self._lists[key] = unpack_all(self.predictions[task])
        return self._lists[key]

    def all_truths(self, task: str) -> list[dict[str, Any] | None]:
        key = ("truth", task)
        if key not in self._lists:
            self._lists[key] = unpack_all(self.truths[task])
        return self._lists[key]

    def errors(self, score_threshold: float = DEFAULT_THRESHOLD) -> dict[str, list]:
        """``{"<task>/<column>": values}`` per sample (see each task display's ``error_columns``) at the
        boxes' ``score_threshold``; computed once per threshold."""
        key = round(float(score_threshold), 4)
        if key not in self.errors_at:
            table: dict[str, list] = {}
            for t, task in self.tasks.items():
                cols = task.display.sample_errors(self.all_predictions(t), self.all_truths(t), score_threshold)
                table.update({f"{t}/{c.name}": cols[c.name] for c in task.display.error_columns if c.name in cols})
            self.errors_at[key] = table
        return self.errors_at[key]

    def confusions(self, task: str, score_threshold: float = DEFAULT_THRESHOLD) -> list:
        return self.tasks[task].display.confusions(self.all_predictions(task), self.all_truths(task), score_threshold)

    def curves(self, task: str, score_threshold: float = DEFAULT_THRESHOLD) -> list:
        return self.tasks[task].display.curves(self.all_predictions(task), self.all_truths(task), score_threshold)


def _sample_target(value: Any, i: int) -> Any:
    return {k: v[i] for k, v in value.items()} if isinstance(value, dict) else value[i]


@torch.no_grad()
def compute(predictor: Any, split: str, limit: int | None = None, batch_size: int = BATCH,
            progress: Callable[[int, int], None] | None = None) -> SplitOutputs:
    """Run ``predictor``'s model (a :class:`~mtl_core.inference.predictor.Predictor`) over the
    first ``limit`` samples of its dataset's ``split`` (all by default)."""
    config, tasks = predictor.config, predictor.tasks
    try:
        dataset = run_dataset(config, split)
    except (OSError, ValueError) as e:
        raise MTLError(f"the run's {split} split cannot be read here: {e}") from None
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    images, preds, truths = [], {t: [] for t in tasks}, {t: [] for t in tasks}
    done = 0
    for batch, targets in iterate_batches(dataset, batch_size, n):
        with INFER_LOCK:  # one inference at a time per process, as on the Predict page
            out = predictor.model(batch.to(predictor.device))
        size = tuple(batch.shape[-2:])
        for t, task in tasks.items():
            preds[t] += task.decode(out[t], size)
            key = task.target_name()
            valid = targets.get("valid", {}).get(key)
            for i in range(batch.shape[0]):
                has = key in targets and (valid is None or bool(valid[i]))
                truths[t].append(task.display.target_to_prediction(_sample_target(targets[key], i)) if has else None)
        images.append((batch.clamp(0, 1) * 255).round().to(torch.uint8).cpu())  # (B, 3, H, W)
        done += batch.shape[0]
        if progress is not None:
            progress(done, n)
    outputs = SplitOutputs(config, split, int(getattr(predictor, "step", 0)), dict(tasks),
                           torch.cat(images) if images else torch.zeros(0, 3, 1, 1, dtype=torch.uint8),
                           list(range(n)), {t: pack(p) for t, p in preds.items()}, {t: pack(v) for t, v in truths.items()})
    outputs.errors(DEFAULT_THRESHOLD)  # at full precision, before anything is reloaded from the packed maps
    return outputs


def save(outputs: SplitOutputs, path: str | os.PathLike, checkpoint: str | os.PathLike, limit: int | None) -> None:
    payload = {"format": FORMAT, "checkpoint": _stamp(Path(checkpoint)), "limit": -1 if limit is None else int(limit),
               "split": outputs.split, "step": outputs.step, "images": outputs.images, "indices": outputs.indices,
               "predictions": outputs.predictions, "truths": outputs.truths,
               "errors": {str(k): v for k, v in outputs.errors_at.items()}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike, checkpoint: str | os.PathLike, predictor_config: Any, tasks: dict[str, Any],
         limit: int | None) -> SplitOutputs | None:
    """The saved outputs when they belong to this version of ``checkpoint`` and these samples;
    ``None`` (rebuild) otherwise, or when the file cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file is rebuilt, never trusted
        return None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT \
            or list(payload.get("checkpoint", [])) != _stamp(Path(checkpoint)) \
            or payload.get("limit") != (-1 if limit is None else int(limit)) \
            or set(payload.get("predictions", {})) != set(tasks):
        return None
    errors = {float(k): v for k, v in payload.get("errors", {}).items()}
    return SplitOutputs(predictor_config, payload["split"], int(payload["step"]), dict(tasks), payload["images"],
                        list(payload["indices"]), payload["predictions"], payload["truths"], errors)


def split_outputs(checkpoint: str | os.PathLike, split: str = "val", limit: int | None = None,
                  progress: Callable[[int, int], None] | None = None, predictor: Any = None) -> SplitOutputs:
    """The per-sample outputs of ``checkpoint`` on ``split``: read from beside it, or computed
    (``predictor`` when given, else loaded from the checkpoint) and saved there."""
    if split not in ("val", "test"):
        raise MTLError(f"split {split!r}: choose val or test")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint {checkpoint} does not exist")
    path = cache_path(checkpoint, split, limit)
    with _BUILD_LOCK:
        predictor = predictor or Predictor(checkpoint)
        found = load(path, checkpoint, predictor.config, predictor.tasks, limit)
        if found is not None:
            return found
        outputs = compute(predictor, split, limit, progress=progress)
        try:
            save(outputs, path, checkpoint, limit)
        except OSError:
            pass  # a read-only runs directory: the outputs still serve this session
        return outputs
