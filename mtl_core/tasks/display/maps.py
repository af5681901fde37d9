"""Showing a dense map of distances (kind ``depth``): a turbo colour map blended with the image or
shown beside it with its colour bar, and each labelled pixel's relative error as a map of its
own; inspected by each image's abs-rel, RMSE and share of pixels within 25% of the truth (the
measures of Eigen et al., "Depth Map Prediction from a Single Image using a Multi-Scale Deep
Network", NeurIPS 2014).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtl_core.measures.stats import per_sample
from mtl_core.measures.types import FLAG, FRACTION, VALUE, ErrorColumn
from mtl_core.tasks.base import Display, register_display
from mtl_core.tasks.depth import MIN_DEPTH, valid_pixels
from mtl_core.tasks.drawing import blend, colormap, with_colour_bar
from mtl_core.tasks.segmentation import upsample

FAILED_DELTA1 = 0.8  # an image with fewer of its pixels within 25% of the truth counts as failed


@register_display("depth")
class MapDisplay(Display):
    """A depth per pixel: ``{"depth": float (H, W)}``, 0 where a ground truth has no label; coloured
    from 0 to the task's ``depth_max``."""

    draw_order = 0
    beside_caption = "Depth (near blue, far red)"
    fusion = "dense_mean"
    errors_beside = True  # draw_errors is a map of its own, with its colour bar, shown beside
    error_max = 0.5  # abs-rel at which the error map's colours stop (larger errors look the same)
    error_columns = (
        ErrorColumn("failed", f"under {FAILED_DELTA1:.0%} of pixels within 25%", FLAG),
        ErrorColumn("abs_rel", "abs-rel", VALUE, help="mean |d - d*| / d* over this image's labelled pixels"),
        ErrorColumn("rmse", "RMSE", VALUE),
        ErrorColumn("delta1", "δ < 1.25", FRACTION, worse="low", help="share of pixels within 25% of the truth"),
    )

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        def measure(p, t):
            gt = torch.as_tensor(t["depth"]).double()
            valid = valid_pixels(gt)
            if not valid.any():
                return None  # nothing labelled to score
            pred = torch.as_tensor(p["depth"]).double()
            if pred.shape != gt.shape:
                pred = upsample(pred.reshape(1, 1, *pred.shape[-2:]), gt.shape[-2:])[0, 0].double()
            d, d_star = pred[valid].clamp(min=MIN_DEPTH), gt[valid]  # (n,)
            delta1 = float((torch.maximum(d / d_star, d_star / d) < 1.25).double().mean())
            return {"failed": delta1 < FAILED_DELTA1, "abs_rel": float(((d - d_star).abs() / d_star).mean()),
                    "rmse": float(((d - d_star) ** 2).mean().sqrt()), "delta1": delta1}

        return per_sample(self.error_columns, predictions, truths, measure)

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3, show_scale: bool = False) -> Tensor:
        """Depth as a turbo colour map (0 .. ``depth_max``, near = blue, far = red) blended with the
        image at ``opacity`` (1 = the colour map alone); unlabelled pixels (depth 0) are left as
        they are. ``show_scale``: the colour bar with its range beside the map, on a margin at the
        right (:func:`~mtl_core.tasks.drawing.with_colour_bar`), for the map shown on its own; the
        overlay blended into a photo has none. ``score_threshold`` does not apply."""
        depth = self._at(prediction["depth"], image)  # (H, W)
        colours = colormap(depth, 0.0, self.task.depth_max)  # (3, H, W)
        out = blend(image, colours, opacity, mask=valid_pixels(depth))
        return with_colour_bar(out, 0.0, self.task.depth_max) if show_scale else out  # (3, H, W [+ bar])

    @staticmethod
    def _at(depth: Any, image: Tensor) -> Tensor:
        """A depth map as float ``(H, W)`` at ``image``'s size, on its device."""
        depth = torch.as_tensor(depth).to(image.device).float()
        depth = depth[0] if depth.dim() == 3 else depth  # (H, W)
        if depth.shape != image.shape[-2:]:
            depth = upsample(depth[None, None], image.shape[-2:])[0, 0]
        return depth

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """A picture of its own, to show beside the overlay (:attr:`errors_beside`): each labelled
        pixel's absolute relative error ``|d - d*| / d*`` as a turbo map from 0 to
        :attr:`error_max` (clamped), unlabelled pixels grey, and a colour bar "abs-rel" beside it;
        uint8 ``(3, H, W + bar)``."""
        d, d_star = self._at(prediction["depth"], image), self._at(truth["depth"], image)  # (H, W) each
        valid = valid_pixels(d_star)
        err = (d.clamp(min=MIN_DEPTH) - d_star).abs() / torch.where(valid, d_star, torch.ones_like(d_star))
        grey = torch.full_like(image, 128)
        out = torch.where(valid[None], colormap(err, 0.0, self.error_max), grey)  # (3, H, W)
        return with_colour_bar(out, 0.0, self.error_max, label="abs-rel")

    def error_legend(self) -> list[tuple[str, str]]:
        return [("unlabelled", "#808080")]

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        d = prediction.get("depth")
        if not isinstance(d, Tensor) or not d.numel():
            return "no depth"
        lo, hi = d.float().aminmax()
        return f"from {float(lo):.2f} to {float(hi):.2f}"

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        depth = torch.as_tensor(self.task.labels(torch.as_tensor(target))).float()
        return {"depth": depth[0] if depth.dim() == 3 else depth}
