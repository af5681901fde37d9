"""A run's dataset samples with their ground truth in the tasks' prediction format, for the
Predict page (ground truth beside the prediction)."""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import torch

from mtl_core.config import ExperimentConfig
from mtl_core.data import build_dataset


@functools.lru_cache(maxsize=4)
def _dataset(key: str, split: str, seed: int):
    # read as a config is, so a [height, width] size comes back as the pair the datasets expect
    return build_dataset(ExperimentConfig.from_dict(json.loads(key)), split, seed)


def run_dataset(config: Any, split: str):
    """The run's dataset for ``split`` (``config``: an ExperimentConfig), built once per data config
    and tasks (a label table reads the kinds the run declared in ``task_specs``)."""
    d = config.to_dict()
    key = json.dumps({"data": d["data"], "tasks": d["tasks"], "task_specs": d["task_specs"]}, sort_keys=True)
    return _dataset(key, split, config.seed)


def dataset_size(config: Any, split: str) -> int:
    """How many samples the run's dataset has in ``split`` (``config``: an ExperimentConfig)."""
    return len(run_dataset(config, split))


def dataset_sample(config: Any, split: str, index: int, tasks: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample ``index`` of the run's dataset: ``(image uint8 (3, H, W), {task: ground truth})``
    with the ground truth in each task's prediction format, ready for :func:`~mtl_core.views.render.render`."""
    ds = run_dataset(config, split)
    if not 0 <= int(index) < len(ds):
        raise IndexError(f"sample {index} is outside the {split} split (0 to {len(ds) - 1})")
    image, targets = ds[int(index)]
    image_u8 = (image.clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
    return image_u8, ground_truth(tasks, targets)


def ground_truth(tasks: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Any]:
    """One sample's targets as each task's prediction (tasks whose label the sample lacks are left out)."""
    return {t: task.display.target_to_prediction(targets[task.target_name()]) for t, task in tasks.items()
            if task.target_name() in targets}
