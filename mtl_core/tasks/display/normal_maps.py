"""Showing surface normals (kind ``normals``): the usual RGB normal map, ``rgb = (n + 1) / 2``, so
that right is red, up is green and towards the camera is blue (a surface facing the camera is
lavender ``(128, 128, 255)``, and an unlabelled pixel, the zero vector, mid-grey); blended with
the image or shown beside it with a key; each labelled pixel's angular error as a map of its own;
inspected by each image's mean and median angle and the share of pixels within 30° (the measures
of Eigen and Fergus, ICCV 2015).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtl_core.measures.stats import per_sample
from mtl_core.measures.types import FLAG, FRACTION, VALUE, ErrorColumn
from mtl_core.tasks.base import Display, register_display
from mtl_core.tasks.drawing import BAR_BACKGROUND, blend, colormap, with_colour_bar
from mtl_core.tasks.normals import angles, labelled, median, normal_map, unit
from mtl_core.tasks.segmentation import upsample

FAILED_ANGLE = 30.0  # an image whose pixels are off by more than this on average counts as failed
LEANS = 0.15  # the mean normal's sideways part at which a summary says which way surfaces lean


def normals_rgb(normals: Tensor) -> Tensor:
    """Unit normals ``(3, H, W)`` -> uint8 ``(3, H, W)``: ``(n + 1) / 2 * 255``, rounded."""
    return ((normals.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def key_sphere(side: int, device: torch.device | str = "cpu") -> Tensor:
    """The normals of a hemisphere facing the camera drawn as :func:`normals_rgb` colours them, on
    white: uint8 ``(3, side, side)``, the key that says which colour faces which way."""
    c = (torch.arange(side, device=device, dtype=torch.float32) + 0.5) / side * 2 - 1  # (side,) in (-1, 1)
    x, y = c[None, :].expand(side, side), -c[:, None].expand(side, side)  # y up
    z2 = 1 - x * x - y * y
    rgb = normals_rgb(torch.stack([x, y, z2.clamp(min=0).sqrt()]))  # (3, side, side)
    white = torch.tensor(BAR_BACKGROUND, dtype=torch.uint8, device=device).view(3, 1, 1).expand(3, side, side)
    return torch.where((z2 > 0)[None], rgb, white)


@register_display("normals")
class NormalsDisplay(Display):
    """A unit normal per pixel: ``{"normals": float (3, H, W)}``, ``x`` right, ``y`` up, ``z``
    towards the camera; all zeros where a ground truth has no label."""

    draw_order = 0
    beside_caption = "Surface normals (right red, up green, facing you blue)"
    fusion = "dense_mean"  # the members' maps averaged; decode makes them unit length again
    errors_beside = True  # draw_errors is a map of its own, with its colour bar, shown beside
    error_max = 45.0  # degrees at which the error map's colours stop (larger errors look the same)
    error_columns = (
        ErrorColumn("failed", f"mean angle over {FAILED_ANGLE:.0f}°", FLAG),
        ErrorColumn("mean_angle", "mean angle °", VALUE, help="mean angle in degrees between the predicted and the "
                                                             "true normal over this image's labelled pixels"),
        ErrorColumn("median_angle", "median angle °", VALUE),
        ErrorColumn("within_30", "within 30°", FRACTION, worse="low", help="share of pixels whose normal is off by under 30°"),
    )

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        def measure(p, t):
            gt = normal_map(t["normals"]).double()  # (1, 3, H, W)
            if not labelled(gt).any():
                return None  # nothing labelled to score
            pred = normal_map(p["normals"]).double()
            if pred.shape != gt.shape:
                pred = upsample(pred, gt.shape[-2:]).double()
            a = angles(pred, gt)  # (n,) degrees
            mean = float(a.mean())
            return {"failed": mean > FAILED_ANGLE, "mean_angle": mean, "median_angle": median(a),
                    "within_30": float((a < 30.0).double().mean())}

        return per_sample(self.error_columns, predictions, truths, measure)

    @staticmethod
    def _at(normals: Any, image: Tensor) -> Tensor:
        """A normal map as float ``(3, H, W)`` at ``image``'s size, on its device; a prediction at
        another size is resampled and made unit length again, a zero (unlabelled) vector stays 0."""
        n = normal_map(normals).to(image.device)  # (1, 3, h, w)
        if n.shape[-2:] != image.shape[-2:]:
            n = unit(upsample(n, image.shape[-2:]))
        return n[0]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3, show_scale: bool = False) -> Tensor:
        """The RGB normal map blended with the image at ``opacity`` (1 = the map alone); unlabelled
        pixels come out mid-grey. ``show_scale``: a key beside the map, on a margin at the right (a
        hemisphere facing the camera, coloured the same way), for the map shown on its own.
        ``score_threshold`` does not apply."""
        out = blend(image, normals_rgb(self._at(prediction["normals"], image)), opacity)  # (3, H, W)
        if not show_scale:
            return out
        h, w = image.shape[-2:]
        side = max(8, min(h, w) // 4)
        margin = torch.tensor(BAR_BACKGROUND, dtype=torch.uint8, device=image.device).view(3, 1, 1)
        margin = margin.expand(3, h, side + 8).clone()  # (3, H, side + 8)
        top = min(2, max(0, h - side))
        margin[:, top:top + side, 4:4 + side] = key_sphere(side, image.device)[:, :h - top]
        return torch.cat([out, margin], dim=-1)  # (3, H, W + side + 8)

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """A picture of its own, to show beside the overlay (:attr:`errors_beside`): each labelled
        pixel's angle between predicted and true normal as a turbo map from 0° to
        :attr:`error_max` (clamped), unlabelled pixels grey, and a colour bar "angle °" beside it;
        uint8 ``(3, H, W + bar)``."""
        pred, gt = self._at(prediction["normals"], image), self._at(truth["normals"], image)  # (3, H, W) each
        valid = labelled(gt[None])[0]  # (H, W)
        cos = (unit(pred[None])[0] * gt).sum(0).clamp(-1.0, 1.0)
        err = torch.rad2deg(torch.acos(cos))  # (H, W)
        grey = torch.full_like(image, 128)
        out = torch.where(valid[None], colormap(err, 0.0, self.error_max), grey)  # (3, H, W)
        return with_colour_bar(out, 0.0, self.error_max, label="angle °")

    def error_legend(self) -> list[tuple[str, str]]:
        return [("unlabelled", "#808080")]

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """"mean tilt 23°, leaning up-left": the mean angle between the labelled pixels' normals
        and the camera's direction, and which way they lean on average when they do."""
        n = prediction.get("normals")
        if not isinstance(n, Tensor) or not n.numel():
            return "no normals"
        n = normal_map(n)  # (1, 3, H, W)
        valid = labelled(n)[0]  # (H, W)
        if not valid.any():
            return "no labelled pixel"
        v = unit(n)[0][:, valid]  # (3, n)
        words = f"mean tilt {math.degrees(float(torch.acos(v[2].clamp(-1.0, 1.0)).mean())):.0f}°"
        x, y = float(v[0].mean()), float(v[1].mean())
        if math.hypot(x, y) < LEANS:
            return words
        side = ("up" if y > 0 else "down") if abs(y) >= LEANS / 2 else ""
        across = ("right" if x > 0 else "left") if abs(x) >= LEANS / 2 else ""
        return f"{words}, leaning {'-'.join(w for w in (side, across) if w)}"

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        n = normal_map(self.task.labels(torch.as_tensor(target)))  # (1, 3, H, W)
        return {"normals": n[0]}
