"""Checkpoints: written atomically, loaded with ``weights_only=True`` (no pickle of anything).

A checkpoint is a dict of tensors, numbers and strings: the experiment config as JSON, the
step, the model's, optimiser's and weighting method's state.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mtl_core.config import ExperimentConfig
from mtl_core.errors import CheckpointError, ConfigError

FORMAT = "mtl-studio-1"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename: a kill at any moment
    leaves either the old file or the new one, never a torn one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_checkpoint(path: str | os.PathLike, config: ExperimentConfig, step: int, model_state: dict,
                    extra: dict[str, Any] | None = None) -> Path:
    payload = {"format": FORMAT, "config": config.to_json(), "step": int(step), "model": model_state, **(extra or {})}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's payload with ``config`` parsed; a clear :class:`CheckpointError` when the
    file is missing, corrupted, not ours, or holds anything but plain data."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a torn or foreign file
        raise CheckpointError(f"checkpoint {path.name} cannot be read (corrupted or not a checkpoint): {str(e)[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} is not an MTL Studio checkpoint")
    try:
        payload["config"] = ExperimentConfig.from_json(payload["config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path.name} holds a config this version cannot read: {e}") from None
    return payload


def _size_words(hw: tuple[int, int]) -> str:
    return str(hw[0]) if hw[0] == hw[1] else f"{hw[0]}x{hw[1]} (height x width)"


def check_compatible(saved: ExperimentConfig, wanted: ExperimentConfig) -> None:
    """Refuse a checkpoint whose model cannot hold ``wanted``'s weights."""
    fields = [("tasks", saved.tasks, wanted.tasks), ("model", saved.model, wanted.model),
              ("data.image_size", _size_words(saved.data.hw), _size_words(wanted.data.hw)),  # 64 is [64, 64]
              ("data.num_shapes", saved.data.num_shapes, wanted.data.num_shapes),
              ("data.dataset", saved.data.dataset, wanted.data.dataset)]
    for name, a, b in fields:
        if a != b:
            raise CheckpointError(f"checkpoint is from a different config: {name} is {a} there, {b} here")
