"""Showing one number per image (kind ``regression``): "age 34.2" in a corner, inspected by its
absolute error against the true value."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mtl_core.measures.types import FLAG, TEXT, VALUE, ErrorColumn
from mtl_core.tasks.base import Display, register_display
from mtl_core.tasks.drawing import HIT, WRONG, Colour, hex_colour, label_text

VALUE_COLOUR: Colour = (30, 60, 120)
NAN = float("nan")


def number(x: float) -> str:
    """A number as a person reads it: 3 significant digits, no trailing zeros ("34.2", "0.0051")."""
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if abs(x) < 1e5 else f"{x:.3e}"


@register_display("regression")
class ValueDisplay(Display):
    """``{"value": float}``; a ground truth the same. Drawn as "age 34.2" at the bottom-left; an
    answer counts as ``failed`` when it is further from the truth than the task's tolerance (spec
    option ``tolerance``, else one standard deviation of the training labels)."""

    draw_order = 45
    image_level = True
    corner = "bottom-left"
    error_columns = (
        ErrorColumn("failed", "off by more than the tolerance", FLAG),
        ErrorColumn("abs_error", "absolute error", VALUE, help="|predicted - true|, in the label's units"),
        ErrorColumn("truth", "true value", TEXT, worse=""),
        ErrorColumn("predicted", "predicted value", TEXT, worse=""),
    )

    @property
    def tolerance(self) -> float:
        return self.task.option("tolerance", getattr(self.task, "std", 1.0))

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        return {"value": float(torch.as_tensor(self.task.labels(torch.as_tensor(target))).float().reshape(-1)[0])}

    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, Colour]]:
        return [(f"{self.title} {number(float(prediction['value']))}", VALUE_COLOUR)]

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        ((text, colour),) = self.chips(prediction)
        return label_text(image, text, colour, corner=self.corner)

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        return number(float(prediction["value"]))

    def caption(self, prediction: dict[str, Any]) -> str:
        return f"{self.title} {number(float(prediction['value']))}"

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, Colour]]:
        p, t = float(prediction["value"]), float(truth["value"])
        ok = abs(p - t) <= self.tolerance
        return [(f"{self.title} {number(p)} {'✓' if ok else '✗'} (truth: {number(t)})", HIT if ok else WRONG)]

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        ((text, colour),) = self.error_chips(prediction, truth)
        return label_text(image, text, colour, corner=self.corner)

    def error_legend(self) -> list[tuple[str, str]]:
        return [("within the tolerance", hex_colour(HIT)), ("further off", hex_colour(WRONG))]

    def sample_errors(self, predictions, truths, score_threshold: float = 0.3) -> dict[str, list]:
        out: dict[str, list] = {c.name: [] for c in self.error_columns}
        for p, t in zip(predictions, truths, strict=True):
            if t is None:
                out["failed"].append(NAN)
                out["abs_error"].append(NAN)
                out["truth"].append("")
                out["predicted"].append("")
                continue
            err = abs(float(p["value"]) - float(t["value"]))
            out["failed"].append(float(err > self.tolerance))
            out["abs_error"].append(err)
            out["truth"].append(number(float(t["value"])))
            out["predicted"].append(number(float(p["value"])))
        return out

