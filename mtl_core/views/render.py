"""Draw predictions (or ground truth in the same format) for the pages: every task's overlay in
its drawing order, dense maps beside the overlay, a line of words per task, the legends.

Nothing here knows a task by name: what differs between tasks comes from the task objects
and their displays (:mod:`mtl_core.tasks.base`). Everything returned to a page is plain Python or numpy
(``(H, W, 3)`` uint8 images) plus PNG bytes, so pages never touch torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtl_core.inference.images import png_bytes, to_numpy_image
from mtl_core.tasks.drawing import draw_all

BESIDE_MAX_SIDE = 640  # pixels: a map shown beside an overlay sits in half the page's width
MIN_DRAW_SIDE = 256  # pixels: smaller images are enlarged before drawing, or their labels would cover them


@dataclass
class Rendered:
    """One image's drawn result, ready for ``st.image`` and a download button."""

    overlay: np.ndarray  # (H, W, 3) uint8: the image with the chosen tasks drawn on it
    beside: dict[str, np.ndarray] = field(default_factory=dict)  # task -> (h, w, 3) uint8 map shown beside
    summary: list[str] = field(default_factory=list)  # one line per task, e.g. "Classification: star (93%)"
    legends: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # task -> [(name, "#rrggbb")]
    seconds: float = 0.0  # model time (predict + decode), not drawing
    _png: bytes | None = field(default=None, repr=False)

    def png(self) -> bytes:
        """The overlay as PNG bytes, encoded on first use (a download button can defer it)."""
        if self._png is None:
            self._png = png_bytes(self.overlay)
        return self._png


def render(predictor: Any, image: torch.Tensor, predictions: Mapping[str, Any], show: Mapping[str, bool] | None = None,
           opacity: float = 0.5, score_threshold: float = 0.3, beside: bool = True,
           seconds: float = 0.0, min_side: int = MIN_DRAW_SIDE) -> Rendered:
    """Draw ``predictions`` (a Predictor's output, or a ground truth in the same format) on
    ``image``; with ``beside`` a task that can be shown as a picture of its own (depth) becomes
    a second image instead of a tint, with its colour bar beside it.

    An image whose short side is below ``min_side`` (a 32 px dataset sample) is first enlarged,
    pixels kept square, with its predictions, so the labels drawn on it stay readable; the labels
    of the whole image (class, count, classes present) then go in a band above it rather than on
    its few objects (see :func:`draw_all`), so the overlay is taller than the enlarged image."""
    tasks = predictor.tasks
    small = min(image.shape[-2:]) < min_side
    image, predictions = enlarge(image, predictions, min_side)
    shown = {t: bool((show or {}).get(t, True)) for t in predictions}
    maps = [t for t in predictions if beside and shown[t] and tasks[t].display.beside_caption]
    on_image = {**shown, **{t: False for t in maps}}
    drawn = draw_all(tasks, image, predictions, on_image, opacity, score_threshold, band=small)  # (3, [b +] H, W)
    return Rendered(overlay=to_numpy_image(drawn),
                    beside={t: to_numpy_image(map_image(tasks[t], image, predictions[t], BESIDE_MAX_SIDE)) for t in maps},
                    summary=describe(tasks, predictions, score_threshold, shown),
                    legends={t: entries for t in predictions if on_image[t] and (entries := tasks[t].display.legend(predictions[t]))},
                    seconds=seconds)


def resize_prediction(prediction: Mapping[str, Any], old: tuple[int, int], new: tuple[int, int]) -> dict[str, Any]:
    """One task's prediction for an image resized from ``old = (H, W)`` to ``new``: ``boxes``
    (xyxy pixels) scaled, every map whose last two dimensions are ``old`` resampled (nearest, so
    labels stay labels); everything else as it is."""
    out = dict(prediction)
    (h, w), (nh, nw) = old, new
    if isinstance(out.get("boxes"), torch.Tensor):
        boxes = out["boxes"].float()  # (n, 4)
        out["boxes"] = boxes * torch.tensor([nw / w, nh / h, nw / w, nh / h], device=boxes.device)
    for key, value in prediction.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and tuple(value.shape[-2:]) == (h, w):
            if (nh, nw) == (h, w):
                continue
            if nh % h == 0 and nw % w == 0 and nh // h == nw // w:  # a whole factor up: repeat pixels
                f = nh // h
                out[key] = value.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)
            else:
                flat = value.reshape(-1, 1, h, w).float()  # (N, 1, h, w)
                resized = F.interpolate(flat, size=(nh, nw), mode="nearest")  # (N, 1, nh, nw)
                out[key] = resized.reshape(*value.shape[:-2], nh, nw).to(value.dtype)
    return out


def enlarge(image: torch.Tensor, predictions: Mapping[str, Any], min_side: int = MIN_DRAW_SIDE,
            factor: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """``image`` (``(3, H, W)``) scaled up by a whole factor, so its short side reaches
    ``min_side`` (or by ``factor`` when given), nearest neighbour (a 32 px sample stays crisp), and
    ``predictions`` with it (see :func:`resize_prediction`). Unchanged when already large enough."""
    h, w = image.shape[-2:]
    if factor is None:
        factor = -(-int(min_side) // max(1, min(h, w))) if min_side else 1  # ceil
    if factor <= 1:
        return image, dict(predictions)
    big = image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)  # (3, fH, fW)
    size = (h * factor, w * factor)
    return big, {t: resize_prediction(p, (h, w), size) for t, p in predictions.items()}


def map_image(task: Any, image: torch.Tensor, prediction: Mapping[str, Any], max_side: int | None = None) -> torch.Tensor:
    """A task's prediction as a picture of its own (its overlay drawn fully opaque, with its scale),
    uint8 ``(3, h, w + scale)``; the map at most ``max_side`` pixels on its long side: it is shown
    beside the overlay, in half the page's width, so colouring every pixel of a large photo would
    be time for nothing. The task's scale (depth's colour bar) widens it on the right."""
    h, w = image.shape[-2:]
    scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)  # (3, h', w')
        prediction = resize_prediction(prediction, (h, w), size)
    return task.display.draw(image, dict(prediction), opacity=1.0, show_scale=True)


def describe(tasks: Mapping[str, Any], predictions: Mapping[str, Any], score_threshold: float = 0.3,
             show: Mapping[str, bool] | None = None) -> list[str]:
    """One short line per shown task, "Title: what a person would read off the overlay"."""
    lines = []
    for t, p in predictions.items():
        if show is not None and not show.get(t, True):
            continue
        task = tasks[t]
        lines.append(f"{getattr(task, 'title', '') or t}: {task.display.summarize(p, score_threshold)}")
    return lines


__all__ = ["BESIDE_MAX_SIDE", "MIN_DRAW_SIDE", "Rendered", "describe", "draw_all", "enlarge",
           "map_image", "render", "resize_prediction"]
