"""MTAN's per-task attention maps (Liu, Johns and Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019) drawn on the image as heat maps, for the Predict page."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mtl_core.inference.predictor import INFER_LOCK, dense_to_photo
from mtl_core.views.render import MIN_DRAW_SIDE, enlarge

ATTENTION_MAX_SIDE = 320  # pixels: attention maps are shown small, several to a row
# a heat colour map, dark (low attention) to bright (high): matplotlib's "inferno" (Smith and van der
# Walt, 2015) at five stops, perceptually ordered and readable in grey; matplotlib is not a dependency
HEAT_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=float)


@dataclass
class AttentionMap:
    """One task's attention drawn on the image, and the range of the raw map (it lies in [0, 1])."""

    image: np.ndarray  # (H, W, 3) uint8: the heat map blended on the image
    low: float
    high: float
    mean: float


def heat_colormap(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` float RGB in [0, 255] (see ``HEAT_STOPS``)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=float)), 0.0, 1.0)
    xs = np.linspace(0.0, 1.0, len(HEAT_STOPS))
    return np.stack([np.interp(v, xs, HEAT_STOPS[:, c]) for c in range(3)], axis=-1)


def has_attention(predictor: Any) -> bool:
    """Whether the predictor's model exposes per-task attention maps (MTAN does)."""
    return callable(getattr(getattr(predictor, "model", None), "attention_maps", None))


def attention_overlays(predictor: Any, image: torch.Tensor, opacity: float = 0.6, stretch: bool = True,
                       max_side: int = ATTENTION_MAX_SIDE, min_side: int = MIN_DRAW_SIDE) -> dict[str, AttentionMap]:
    """Each task's attention map of an MTAN model for ``image`` (uint8 ``(3, H, W)``), upsampled to
    the image and blended on it as a heat map; ``{}`` for a model without attention. With
    ``stretch`` each map is coloured from its own minimum to its maximum, so a nearly flat map (a
    barely trained run's sits near 0.5) still shows where it attends more; otherwise on the
    absolute 0..1 scale. Shown at most ``max_side`` pixels."""
    if not has_attention(predictor):
        return {}
    image, _ = enlarge(image, {}, min_side)
    h, w = image.shape[-2:]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    shown = F.interpolate(x[None], size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0]  # (3, h, w)
    with INFER_LOCK, torch.no_grad():
        maps = predictor.model.attention_maps(predictor.model_input(image))  # {task: (1, h', w')} in [0, 1]
    # the maps cover the model's frame: carried onto the picture as the photo was fitted to that
    # frame, so a letterbox's padding is cut off and what the model attended to lines up
    on_picture = predictor.fit_for(size)
    base = shown.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0  # (h, w, 3)
    out = {}
    for t, m in maps.items():
        m = m[0].float().cpu()  # (h', w')
        lo, hi = float(m.min()), float(m.max())
        v = (m - lo) / (hi - lo) if stretch and hi - lo > 1e-6 else m
        v = dense_to_photo(v[None, None], on_picture)[0, 0]  # (h, w)
        blended = (1.0 - opacity) * base + opacity * heat_colormap(v.numpy())
        out[t] = AttentionMap(np.clip(blended.round(), 0, 255).astype(np.uint8), lo, hi, float(m.mean()))
    return out
