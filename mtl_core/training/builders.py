"""Turn a config into the objects training and inference need (tasks, datasets, model, device)."""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from mtl_core.config import ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.errors import ConfigError
from mtl_core.models import build_model
from mtl_core.tasks import Task, build_task


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA on a machine without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA was asked for but this machine has no CUDA GPU; use auto or cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError("device", f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting (``None`` = plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_tasks(config: ExperimentConfig, info) -> dict[str, Task]:
    return {name: build_task(name, info) for name in config.tasks}


def build_all(config: ExperimentConfig, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Any]:
    """Datasets for ``splits``, tasks and model for ``config`` (seeded, on the CPU)."""
    torch.manual_seed(config.seed)
    datasets = {s: build_dataset(config.data, s, config.seed) for s in splits}
    info = next(iter(datasets.values())).info
    tasks = build_tasks(config, info)
    model = build_model(tasks, config.model)
    return {"datasets": datasets, "info": info, "tasks": tasks, "model": model}
