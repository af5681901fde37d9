"""Load a checkpoint, predict every task for an image, draw the overlays.

The model used here is always a separate copy loaded from a checkpoint, never the module a
trainer is updating, so inference cannot disturb a running run.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mtl_core.config import ExperimentConfig
from mtl_core.data import DatasetInfo, build_dataset
from mtl_core.errors import CheckpointError
from mtl_core.models import build_model
from mtl_core.models.channel_prune import restore_structure
from mtl_core.tasks import build_tasks
from mtl_core.tasks.drawing import draw_all
from mtl_core.training.checkpoint import load_checkpoint

# one inference at a time per process, so several viewers of the Predict page cannot pile up on
# the cores a training run uses (the thread count is never changed: it is process-wide state)
INFER_LOCK = threading.Lock()


def info_from_config(config: ExperimentConfig) -> DatasetInfo:
    return build_dataset(config, "val", config.seed).info


class Predictor:
    """All task outputs of one trained run for images of any size."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu") -> None:
        payload = load_checkpoint(checkpoint, map_location=device)
        self.config: ExperimentConfig = payload["config"]
        self.step = payload["step"]
        self.device = torch.device(device)
        info = payload.get("info")
        self.info = DatasetInfo.from_dict(info) if isinstance(info, dict) else info_from_config(self.config)
        self.tasks = build_tasks(self.config, self.info)
        self.model = build_model(self.tasks, self.config.model)
        if "structure" in payload:  # a channel-pruned model: replay its pruning, then load its (smaller) weights

            spec = json.loads(payload["structure"])
            restore_structure(self.model, spec["history"], int(spec.get("image_size", self.config.data.image_size)))
        try:
            self.model.load_state_dict(payload["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"checkpoint weights do not fit its config's model: {str(e)[:200]}") from None
        self.model.to(self.device).eval()

    @property
    def input_size(self) -> int:
        return self.config.data.image_size

    @property
    def parameters(self) -> int:
        """How many parameters the model has (fewer for a channel-pruned one)."""
        return sum(p.numel() for p in self.model.parameters())

    def model_input(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 or float ``(3, H, W)`` -> the model's input ``(1, 3, S, S)`` in [0, 1] on its device."""
        x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        x = F.interpolate(x[None], size=(self.input_size, self.input_size), mode="bilinear",
                          antialias=True, align_corners=False)  # (1, 3, S, S)
        return x.to(self.device)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> tuple[dict[str, dict[str, Any]], float]:
        """uint8 or float ``(3, H, W)`` -> ``({task: prediction in image coordinates}, seconds)``."""
        h, w = image.shape[-2:]
        x = self.model_input(image)
        with INFER_LOCK:
            t0 = time.perf_counter()
            out = self.model(x)
            preds = {t: task.decode(out[t], (h, w))[0] for t, task in self.tasks.items()}
            seconds = time.perf_counter() - t0
        return preds, seconds

    def overlay(self, image: torch.Tensor, predictions: dict[str, dict[str, Any]], show: dict[str, bool] | None = None,
                opacity: float = 0.5, score_threshold: float = 0.3) -> torch.Tensor:
        """Draw the chosen tasks' predictions on ``image`` (uint8 ``(3, H, W)``)."""
        return draw_all(self.tasks, image, predictions, show, opacity, score_threshold)

    def info_dict(self) -> dict[str, Any]:
        return asdict(self.info)
