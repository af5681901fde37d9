"""Turn a config into the objects training and inference need (tasks, datasets, model, device)."""
from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from mtl_core.config import ExperimentConfig
from mtl_core.data import build_dataset
from mtl_core.errors import ConfigError
from mtl_core.isolation import seeded_global_rng
from mtl_core.models import build_model
from mtl_core.tasks import build_tasks


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


def build_all(config: ExperimentConfig, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Any]:
    """Datasets for ``splits``, tasks and model for ``config``, on the CPU; the model's initial
    weights depend on ``config.seed`` alone, whatever other threads do meanwhile."""
    datasets = {s: build_dataset(config, s, config.seed) for s in splits}
    info = next(iter(datasets.values())).info
    tasks = build_tasks(config, info)
    with seeded_global_rng(config.seed):  # nn.Module initialisation draws from the global generator
        model = build_model(tasks, config.model)
    return {"datasets": datasets, "info": info, "tasks": tasks, "model": model}


def build_optimizer(params, cfg) -> torch.optim.Optimizer:
    """The optimiser named by ``cfg`` (an OptimConfig) over ``params``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 5%, a step decay (``gamma`` every ``step_size`` steps,
    PyTorch's StepLR as LibMTL's and MTAN's NYUv2 protocols use it: halved after 100 of 200 epochs),
    or constant. With a time limit the decay follows whichever runs out first, steps or time, so a
    time-boxed run still ends on a low rate."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "step":
        at = max(step, int(time_fraction * cfg.steps))
        return cfg.gamma ** (at // cfg.step_size) if cfg.step_size > 0 else 1.0
    if cfg.scheduler != "cosine":
        return 1.0
    t = max((step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps), time_fraction)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
