"""Load a checkpoint, predict every task for an image of any shape, draw the overlays.

The model used here is always a separate copy loaded from a checkpoint, never the module a
trainer is updating, so inference cannot disturb a running run.

A photo of any shape is brought to the model's ``H x W`` the way the run's data was
(:func:`resize_policy`: the config's ``data.resize``, else stretch for the procedural scenes,
which are drawn at that size, and letterbox for photos), and every prediction comes back in the
photo's own pixels, so an overlay drawn on the photo a person gave lines up with it. Dense maps
(segmentation logits, depth) are resampled from the model's frame onto the photo's pixel grid in
one bilinear step (:func:`dense_to_photo`), so a mask on a large photo has smooth edges rather than
the model's pixels blown up; anything else is decoded at the model's size and mapped back with
:class:`~mtl_core.data.resize.Fit`'s ``boxes_back``, ``mask_back`` and ``map_back``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as tF
from torch import Tensor

from mtl_core.config import ExperimentConfig, size_hw
from mtl_core.data import DatasetInfo, build_dataset
from mtl_core.data.resize import Fit, fit
from mtl_core.errors import CheckpointError
from mtl_core.models import build_model
from mtl_core.models.channel_prune import restore_structure
from mtl_core.tasks import build_tasks
from mtl_core.tasks.drawing import draw_all
from mtl_core.training.checkpoint import load_checkpoint

# one inference at a time per process, so several viewers of the Predict page cannot pile up on
# the cores a training run uses (the thread count is never changed: it is process-wide state)
INFER_LOCK = threading.Lock()


DENSE_FUSIONS = ("dense_softmax", "dense_mean")  # display kinds whose raw output is a map over the image
PER_IMAGE_FUSIONS = ("softmax", "sigmoid")  # display kinds whose output says nothing about where


def info_from_config(config: ExperimentConfig) -> DatasetInfo:
    return build_dataset(config, "val", config.seed).info


def resize_policy(config: ExperimentConfig) -> str:
    """How a photo of another shape is brought to the run's ``H x W``: the run's ``data.resize``,
    else its dataset's default (stretch for the scenes, drawn at the size; letterbox for photos)."""
    return config.data.resize or ("stretch" if config.data.dataset == "scenes" else "letterbox")


def dense_to_photo(x: Tensor, f: Fit) -> Tensor:
    """A map ``(B, C, h, w)`` over the model's whole frame (any resolution: a head's logits at its
    stride) -> ``(B, C, h0, w0)`` on the photo's pixels, float32: each photo pixel's centre is
    carried into the frame by ``f`` and the map read there bilinearly, in one resampling. Reads
    stay half a map cell inside the photo's part of the frame, so a letterbox's padding does not
    bleed into the photo's edge; photo pixels a crop cut off are 0."""
    x = x.float()
    h0, w0 = f.src
    dev = x.device

    def axis(n: int, scale: float, offset: int, scaled: int, frame: int, cells: int) -> tuple[Tensor, Tensor]:
        """grid_sample's [-1, 1] coordinates of the photo's pixel centres along one axis of a map
        of ``cells``, and which of them fall inside the frame."""
        c = (torch.arange(n, device=dev, dtype=torch.float32) + 0.5) * scale + offset  # model pixels
        per = cells / frame  # map cells per model pixel
        lo, hi = max(offset, 0) * per + 0.5, min(offset + scaled, frame) * per - 0.5  # the photo's outermost cells
        if hi < lo:  # the photo spans less than a cell: read its middle
            lo = hi = (lo + hi) / 2
        return 2 * (c * per).clamp(lo, hi) / cells - 1, (c >= 0) & (c <= frame)

    gx, in_x = axis(w0, f.sx, f.left, f.scaled[1], f.dst[1], x.shape[-1])
    gy, in_y = axis(h0, f.sy, f.top, f.scaled[0], f.dst[0], x.shape[-2])
    grid = torch.stack([gx[None, :].expand(h0, w0), gy[:, None].expand(h0, w0)], -1)  # (h0, w0, 2)
    out = tF.grid_sample(x, grid[None].expand(x.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)  # (B, C, h0, w0)
    if bool(in_x.all()) and bool(in_y.all()):
        return out
    return out * (in_y[:, None] & in_x[None, :])


def prediction_to_photo(prediction: dict[str, Any], f: Fit) -> dict[str, Any]:
    """One decoded prediction at the model's ``H x W`` -> the photo's pixels: ``boxes`` by
    ``boxes_back``, a ``mask`` by ``mask_back`` (nearest: no invented classes), a ``depth`` map (or
    per-pixel ``probs``) by ``map_back``; per-image values (labels, scores, counts) unchanged."""
    out = dict(prediction)
    for key, value in prediction.items():
        if not isinstance(value, Tensor):
            continue
        value = value.cpu()  # the Fit's maps are on the CPU, where predictions are handed out
        if key == "boxes":
            out[key] = f.boxes_back(value)
        elif key == "mask" and tuple(value.shape[-2:]) == f.dst:
            out[key] = f.mask_back(value, fill=0)
        elif key in ("depth", "probs") and value.dim() >= 2 and tuple(value.shape[-2:]) == f.dst:
            out[key] = f.map_back(value)
    return out


def outputs_in_photo(tasks: dict[str, Any], outputs: dict[str, Any], f: Fit) -> dict[str, Any]:
    """Each task's output for a batch, moved from the model's frame to the photos' (``f.src``):
    per-image answers as they are; dense maps resampled onto the photo's pixels
    (:func:`dense_to_photo`); anything else (boxes) decoded at the model's size and mapped back, a
    list with one prediction per image. A stretch (or no resize) maps the frame onto the whole
    photo, so there every output stays as it is and decodes straight at the photo's size."""
    if f.identity or f.policy == "stretch":
        return dict(outputs)
    moved: dict[str, Any] = {}
    for t, task in tasks.items():
        out, fusion = outputs[t], task.display.fusion
        if fusion in PER_IMAGE_FUSIONS:
            moved[t] = out
        elif fusion in DENSE_FUSIONS and isinstance(out, Tensor) and out.dim() == 4:
            moved[t] = dense_to_photo(out, f)
        else:
            moved[t] = [prediction_to_photo(p, f) for p in task.decode(out, f.dst)]
    return moved


def decode_in_photo(tasks: dict[str, Any], outputs: dict[str, Any], f: Fit) -> dict[str, list[dict[str, Any]]]:
    """Every task's predictions for a batch of model outputs, in the pixels of photos of ``f.src``:
    ``{task: [prediction per image]}`` (see :func:`outputs_in_photo`)."""
    moved = outputs_in_photo(tasks, outputs, f)
    return {t: moved[t] if isinstance(moved[t], list) else task.decode(moved[t], f.src) for t, task in tasks.items()}


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
            restore_structure(self.model, spec["history"], spec.get("image_size", self.config.data.image_size))
        try:
            self.model.load_state_dict(payload["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"checkpoint weights do not fit its config's model: {str(e)[:200]}") from None
        self.model.to(self.device).eval()

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` the model sees."""
        return self.config.data.hw

    @property
    def input_label(self) -> str:
        """The input size in words: ``64 px`` for a square, else ``288x384 px (height x width)``,
        saying the order, since image sizes are often written width first."""
        h, w = self.input_size
        return f"{h} px" if h == w else f"{h}x{w} px (height x width)"

    @property
    def resize_policy(self) -> str:
        """How a photo of another shape is brought to :attr:`input_size` (see :func:`resize_policy`)."""
        return resize_policy(self.config)

    def fit_for(self, size: tuple[int, int] | torch.Size) -> Fit:
        """The :class:`Fit` of a photo of ``size = (h0, w0)`` to the model's input."""
        return fit(size_hw(tuple(size)[-2:]), self.input_size, self.resize_policy)

    @property
    def parameters(self) -> int:
        """How many parameters the model has (fewer for a channel-pruned one)."""
        return sum(p.numel() for p in self.model.parameters())

    def model_input(self, image: torch.Tensor, fitted: Fit | None = None) -> torch.Tensor:
        """uint8 or float ``(3, h0, w0)`` photo -> the model's input ``(1, 3, H, W)`` in [0, 1] on its
        device, brought there by ``fitted`` (default: :meth:`fit_for` the photo)."""
        x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
        return (fitted or self.fit_for(image.shape)).image(x)[None].to(self.device)  # (1, 3, H, W)

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> tuple[dict[str, dict[str, Any]], float]:
        """uint8 or float ``(3, h0, w0)`` -> ``({task: prediction in the photo's pixels}, seconds)``."""
        f = self.fit_for(image.shape)
        x = self.model_input(image, f)
        with INFER_LOCK:
            t0 = time.perf_counter()
            out = self.model(x)
            preds = {t: p[0] for t, p in decode_in_photo(self.tasks, out, f).items()}
            seconds = time.perf_counter() - t0
        return preds, seconds

    def overlay(self, image: torch.Tensor, predictions: dict[str, dict[str, Any]], show: dict[str, bool] | None = None,
                opacity: float = 0.5, score_threshold: float = 0.3) -> torch.Tensor:
        """Draw the chosen tasks' predictions on ``image`` (uint8 ``(3, H, W)``)."""
        return draw_all(self.tasks, image, predictions, show, opacity, score_threshold)

    def info_dict(self) -> dict[str, Any]:
        return asdict(self.info)
