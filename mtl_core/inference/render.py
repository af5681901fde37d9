"""What the dashboard's pages need from tasks, datasets and the Predictor, without importing torch
themselves: task metadata, dataset samples with their ground truth, one-call predict-and-draw,
short text summaries of each task's prediction, and MTAN's per-task attention maps drawn on
the image.

Everything returned to a page is plain Python or numpy (``(H, W, 3)`` uint8 images) plus PNG bytes.
"""
from __future__ import annotations

import functools
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mtl_core.inference.images import to_numpy_image

DEPTH_MODES = ("beside", "blended")
BESIDE_MAX_SIDE = 640  # pixels: the depth map shown beside an overlay sits in half the page's width
MIN_DRAW_SIDE = 256  # pixels: smaller images are enlarged before drawing, or their labels would cover them
ATTENTION_MAX_SIDE = 320  # pixels: attention maps are shown small, several to a row
# a heat colour map, dark (low attention) to bright (high): matplotlib's "inferno" (Smith and van der
# Walt, 2015) at five stops, perceptually ordered and readable in grey; matplotlib is not a dependency
HEAT_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=float)


def task_meta(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{task: {"primary", "higher_is_better", "title"}}`` from the task registry; a name it does
    not know (a run recorded by a newer version) gets neutral defaults rather than an error."""
    try:
        from mtl_core.tasks import TASKS
    except Exception:  # pragma: no cover - tasks package broken: still show the run
        TASKS = None
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cls = None
        if TASKS is not None:
            try:
                cls = TASKS.get(name)
            except Exception:
                cls = None
        out[name] = {"primary": getattr(cls, "primary", ""), "higher_is_better": bool(getattr(cls, "higher_is_better", True)),
                     "title": getattr(cls, "title", "") or name.replace("_", " ").capitalize()}
    return out


@dataclass
class Rendered:
    """One image's drawn result, ready for ``st.image`` and a download button."""

    overlay: np.ndarray  # (H, W, 3) uint8: the image with the chosen tasks drawn on it
    depth: np.ndarray | None = None  # (H, W, 3) uint8 depth colour map, when shown beside
    summary: list[str] = field(default_factory=list)  # one line per task, e.g. "Classification: star (93%)"
    legend: list[tuple[str, str]] = field(default_factory=list)  # segmentation classes present: (name, "#rrggbb")
    seconds: float = 0.0  # model time (predict + decode), not drawing
    _png: bytes | None = field(default=None, repr=False)

    def png(self) -> bytes:
        """The overlay as PNG bytes, encoded on first use (a download button can defer it)."""
        if self._png is None:
            self._png = png_bytes(self.overlay)
        return self._png


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG. zlib level 1: about 3x faster than Pillow's default level 6
    and, on photos, hardly larger (the noise does not compress either way)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render(predictor: Any, image: torch.Tensor, predictions: Mapping[str, Any], show: Mapping[str, bool] | None = None,
           opacity: float = 0.5, score_threshold: float = 0.3, depth_mode: str = "beside",
           seconds: float = 0.0, min_side: int = MIN_DRAW_SIDE) -> Rendered:
    """Draw ``predictions`` (a Predictor's output, or a ground truth in the same format) on
    ``image``; with ``depth_mode="beside"`` depth becomes a second image instead of a tint.

    An image whose short side is below ``min_side`` (a 32 px dataset sample) is first enlarged,
    pixels kept square, with its predictions, so the labels drawn on it stay readable."""
    from mtl_core.inference.predictor import draw_all

    image, predictions = enlarge(image, predictions, min_side)
    tasks = predictor.tasks
    show = {t: bool((show or {}).get(t, True)) for t in predictions}
    depth_img = None
    if "depth" in predictions and show.get("depth") and depth_mode == "beside":
        show["depth"] = False
        depth_img = to_numpy_image(depth_colormap(tasks["depth"], image, predictions["depth"], BESIDE_MAX_SIDE))
    drawn = draw_all(tasks, image, dict(predictions), show, opacity, score_threshold)  # (3, H, W) uint8
    return Rendered(overlay=to_numpy_image(drawn), depth=depth_img,
                    summary=describe(tasks, predictions, score_threshold, show={**show, **({"depth": True} if depth_img is not None else {})}),
                    legend=segmentation_legend(tasks, predictions) if show.get("segmentation") else [],
                    seconds=seconds)


def enlarge(image: torch.Tensor, predictions: Mapping[str, Any], min_side: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """``image`` (uint8 ``(3, H, W)``) scaled up by a whole factor so its short side reaches
    ``min_side`` (nearest neighbour: a 32 px sample stays crisp), and ``predictions`` with it:
    boxes scaled, masks and depth maps enlarged the same way. Unchanged when already large enough."""
    h, w = image.shape[-2:]
    factor = -(-int(min_side) // max(1, min(h, w))) if min_side else 1  # ceil
    if factor <= 1:
        return image, dict(predictions)
    big = image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)  # (3, fH, fW)
    out: dict[str, Any] = {}
    for task, pred in predictions.items():
        p = dict(pred)
        if isinstance(p.get("boxes"), torch.Tensor):
            p["boxes"] = p["boxes"].float() * factor  # (n, 4) xyxy pixels
        for key in ("mask", "depth"):
            if isinstance(p.get(key), torch.Tensor) and p[key].dim() >= 2:
                p[key] = p[key].repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        out[task] = p
    return big, out


def depth_colormap(task: Any, image: torch.Tensor, prediction: Mapping[str, Any],
                   max_side: int | None = None) -> torch.Tensor:
    """The depth prediction as a colour map (the task's overlay drawn fully opaque), uint8
    ``(3, h, w)``; at most ``max_side`` pixels on its long side: it is shown beside the overlay,
    in half the page's width, so colouring every pixel of a large photo would be time for nothing."""
    depth = prediction["depth"]
    h, w = image.shape[-2:]
    scale = min(1.0, max_side / max(h, w)) if max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear",
                                                antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        d = depth.float().reshape(1, 1, *depth.shape[-2:])  # (1, 1, H, W)
        depth = torch.nn.functional.interpolate(d, size=size, mode="nearest")[0, 0]  # (h, w)
    return task.draw(image, {**prediction, "depth": depth}, opacity=1.0)


def segmentation_legend(tasks: Mapping[str, Any], predictions: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(class name, "#rrggbb")]`` for the classes present in the segmentation mask."""
    if "segmentation" not in predictions or "segmentation" not in tasks:
        return []
    from mtl_core.tasks.drawing import colour_for

    task = tasks["segmentation"]
    present = [c for c in _classes_present(predictions["segmentation"]["mask"]) if c >= 1]
    name = getattr(task, "class_name", lambda c: f"class {c - 1}")
    return [(name(c), "#{:02x}{:02x}{:02x}".format(*colour_for(c - 1))) for c in present]


def _class_counts(mask: Any) -> list[int]:
    """Pixels per label of a segmentation mask (label 255, "ignore", counts as 0); bincount, not
    ``torch.unique``, which sorts and is ~10x slower on a photo-sized mask."""
    m = torch.as_tensor(mask).reshape(-1)
    if m.numel() == 0:
        return []
    counts = torch.bincount(m.long().clamp(0, 255)).tolist()
    if len(counts) > 255:
        counts[255] = 0
    return counts


def _classes_present(mask: Any) -> list[int]:
    return [c for c, n in enumerate(_class_counts(mask)) if n > 0]


def describe(tasks: Mapping[str, Any], predictions: Mapping[str, Any], score_threshold: float = 0.3,
             show: Mapping[str, bool] | None = None) -> list[str]:
    """One short line per shown task: what a person would read off the overlay."""
    lines = []
    for t, p in predictions.items():
        if show is not None and not show.get(t, True):
            continue
        task = tasks.get(t)
        title = getattr(task, "title", "") or t
        names = tuple(getattr(getattr(task, "info", None), "class_names", ()) or ())
        lines.append(f"{title}: {_describe_one(t, p, names, score_threshold)}")
    return lines


def _percent(x: float) -> str:
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def _name(names: tuple[str, ...], i: int) -> str:
    return names[i] if 0 <= i < len(names) else f"class {i}"


def _describe_one(task: str, p: Mapping[str, Any], names: tuple[str, ...], thr: float) -> str:
    if task == "classification" and "label" in p:
        return f"{_name(names, int(p['label']))} ({float(p.get('score', 1.0)):.0%})"
    if task == "detection" and "boxes" in p:
        labels = torch.as_tensor(p["labels"]).reshape(-1).tolist()
        scores = torch.as_tensor(p["scores"]).reshape(-1).tolist() if p.get("scores") is not None else [1.0] * len(labels)
        kept = [(_name(names, int(c)), s) for c, s in zip(labels, scores, strict=False) if s >= thr]
        if not kept:
            return f"no box scores {thr:.2f} or more"
        return f"{len(kept)} box{'es' if len(kept) != 1 else ''}: " + ", ".join(
            f"{n} {s:.2f}" if p.get("scores") is not None else n for n, s in kept[:8]) + (" ..." if len(kept) > 8 else "")
    if task == "segmentation" and "mask" in p:
        counts = _class_counts(p["mask"])
        present = [c for c in range(1, len(counts)) if counts[c] > 0]
        if not present:
            return "background only"
        area = {c: counts[c] / max(1, sum(counts)) for c in present}
        return ", ".join(f"{_name(names, c - 1)} {_percent(area[c])}" for c in sorted(present, key=lambda c: -area[c]))
    if task == "depth":
        d = p.get("depth")
        if isinstance(d, torch.Tensor) and d.numel():
            lo, hi = d.float().aminmax()
            return f"from {float(lo):.2f} to {float(hi):.2f}"
    if task == "count":
        v = p.get("count", p.get("value"))
        if v is not None:
            return f"{float(v):.1f}".rstrip("0").rstrip(".") + " objects"
    if task == "multilabel":
        probs = p.get("probs")
        if probs is not None:
            pr = torch.as_tensor(probs).reshape(-1).tolist()
            on = [(_name(names, i), s) for i, s in enumerate(pr) if s >= 0.5]
            return ", ".join(f"{n} {s:.2f}" for n, s in on) or "nothing present"
    keys = ", ".join(sorted(p)) if isinstance(p, Mapping) else type(p).__name__
    return f"({keys})"


# -- attention maps (MTAN) --------------------------------------------------------------------
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
    """Each task's attention map of an MTAN model (Liu, Johns and Davison, CVPR 2019) for ``image``
    (uint8 ``(3, H, W)``), upsampled to the image and blended on it as a heat map; ``{}`` for a
    model without attention. With ``stretch`` each map is coloured from its own minimum to its
    maximum, so a nearly flat map (a barely trained run's sits near 0.5) still shows where it
    attends more; otherwise on the absolute 0..1 scale. Shown at most ``max_side`` pixels."""
    from mtl_core.inference.predictor import _INFER_LOCK  # one inference at a time per process, as Predictor

    if not has_attention(predictor):
        return {}
    image, _ = enlarge(image, {}, min_side)
    h, w = image.shape[-2:]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    shown = F.interpolate(x[None], size=size, mode="bilinear", antialias=scale < 1, align_corners=False)[0]  # (3, h, w)
    s = predictor.input_size
    x = F.interpolate(x[None], size=(s, s), mode="bilinear", antialias=True, align_corners=False)  # (1, 3, S, S)
    with _INFER_LOCK:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # leave the other cores to a running training run
        try:
            maps = predictor.model.attention_maps(x.to(predictor.device))  # {task: (1, h', w')} in [0, 1]
        finally:
            torch.set_num_threads(threads)
    base = shown.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0  # (h, w, 3)
    out = {}
    for t, m in maps.items():
        m = m[0].float().cpu()  # (h', w')
        lo, hi = float(m.min()), float(m.max())
        v = (m - lo) / (hi - lo) if stretch and hi - lo > 1e-6 else m
        v = F.interpolate(v[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]  # (h, w)
        blended = (1.0 - opacity) * base + opacity * heat_colormap(v.numpy())
        out[t] = AttentionMap(np.clip(blended.round(), 0, 255).astype(np.uint8), lo, hi, float(m.mean()))
    return out


# -- dataset samples --------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _dataset(data_json: str, split: str, seed: int):
    from mtl_core.config import DataConfig
    from mtl_core.data import build_dataset

    return build_dataset(DataConfig(**json.loads(data_json)), split, seed)


def dataset_size(config: Any, split: str) -> int:
    """How many samples the run's dataset has in ``split`` (``config``: an ExperimentConfig)."""
    return len(_dataset(json.dumps(config.to_dict()["data"], sort_keys=True), split, config.seed))


def dataset_sample(config: Any, split: str, index: int, tasks: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Sample ``index`` of the run's dataset: ``(image uint8 (3, H, W), {task: ground truth})``
    with the ground truth in each task's prediction format, ready for :func:`render`."""
    ds = _dataset(json.dumps(config.to_dict()["data"], sort_keys=True), split, config.seed)
    if not 0 <= int(index) < len(ds):
        raise IndexError(f"sample {index} is outside the {split} split (0 to {len(ds) - 1})")
    image, targets = ds[int(index)]
    image_u8 = (image.clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
    truth = {t: task.target_to_prediction(targets[t]) for t, task in tasks.items() if t in targets}
    return image_u8, truth


__all__ = ["DEPTH_MODES", "AttentionMap", "Rendered", "attention_overlays", "dataset_sample", "dataset_size",
           "depth_colormap", "describe", "enlarge", "has_attention", "heat_colormap", "png_bytes", "render",
           "segmentation_legend", "task_meta"]
