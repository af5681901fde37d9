"""What the Inspect page shows, drawn: thumbnails of the error browser, one sample large with
every task's ground truth, prediction and errors, and one image through several runs.

Everything returned is numpy ``(H, W, 3)`` uint8 images and plain Python, so pages never touch
torch. A task is drawn by its display's ``draw`` / ``draw_errors``; nothing here knows a task by name:
a task with top answers (``top_k``, e.g. a class) is told in words rather than drawn over a small
image, and a task with a picture of its own (``beside_caption``, depth) is shown beside.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtl_core.inference.images import to_numpy_image
from mtl_core.measures.types import COUNT, FLAG, FRACTION, TEXT, VALUE
from mtl_core.views.render import enlarge, map_image

THUMB_SIDE = 192  # pixels: six thumbnails across a wide page
LARGE_SIDE = 384


def in_words(task: Any, prediction: Mapping[str, Any]) -> bool:
    """A task whose answer is a few words (a class, a count) rather than something in the image."""
    return bool(task.display.top_k(dict(prediction), 1))


def _drawn_on_image(tasks: Mapping[str, Any], show: Mapping[str, bool], prediction: Mapping[str, Any]) -> list[str]:
    """The shown tasks drawn on the image itself, in drawing order (dense maps first)."""
    names = [t for t in prediction if show.get(t, True) and not tasks[t].display.beside_caption
             and not in_words(tasks[t], prediction[t])]
    return sorted(names, key=lambda t: tasks[t].display.draw_order)


def _draw(task: Any, image: torch.Tensor, prediction: Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
    """A task's drawing with its legend left off the image (the page shows it beside)."""
    if task.display.draws_legend:
        kwargs["show_legend"] = False
    return task.display.draw(image, dict(prediction), **kwargs)


def _errors_on(tasks: Mapping[str, Any], image: torch.Tensor, prediction: Mapping[str, Any],
               truth: Mapping[str, Any], names: Sequence[str], score_threshold: float) -> torch.Tensor:
    out = image
    for t in names:
        if t in truth:
            out = tasks[t].display.draw_errors(out, prediction[t], truth[t], score_threshold=score_threshold)
        else:
            out = _draw(tasks[t], out, prediction[t], score_threshold=score_threshold)
    return out


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if kind == TEXT:
        return str(value)
    if kind in (FLAG, COUNT):
        return f"{value:.0f}"
    return f"{value:.2f}" if kind == FRACTION else f"{value:.3g}"


def task_line(task: Any, row: Mapping[str, Any], prefix: str) -> str:
    """A short line of one task's errors on a sample ("✗ Detection: missed objects 1, false boxes 2");
    ``row`` holds the error table's values for the sample, keyed ``"<task>/<name>"``."""
    failed = row.get(f"{prefix}/failed")
    mark = "·" if failed is None or (isinstance(failed, float) and math.isnan(failed)) else ("✗" if failed else "✓")
    cols = {c.name: c for c in task.display.error_columns}
    title = getattr(task, "title", "") or prefix
    if "predicted" in cols and "truth" in cols:  # an answer: what it said, and the truth when wrong
        said, true = row.get(f"{prefix}/predicted", ""), row.get(f"{prefix}/truth", "")
        conf = row.get(f"{prefix}/confidence")
        text = f"{said} {conf:.0%}" if isinstance(conf, float) and not math.isnan(conf) else str(said) or "–"
        return f"{mark} {title}: {text}" + (f" (truth: {true})" if failed and true else "")
    parts = [f"{c.title} {_fmt(row.get(f'{prefix}/{c.name}'), c.kind)}" for c in task.display.error_columns
             if c.kind in (COUNT, FRACTION, VALUE) and c.worse][:2]
    return f"{mark} {title}: " + ", ".join(parts)


def row_of(table: Mapping[str, Sequence], j: int) -> dict[str, Any]:
    return {k: v[j] for k, v in table.items()}


def _scaled(image: torch.Tensor, prediction: Mapping[str, Any], truth: Mapping[str, Any] | None, side: int):
    merged = {**{f"p:{t}": v for t, v in prediction.items()}, **{f"t:{t}": v for t, v in (truth or {}).items()}}
    image, both = enlarge(image, merged, side)
    return image, {t: both[f"p:{t}"] for t in prediction}, {t: both[f"t:{t}"] for t in (truth or {})}


def thumbnail(outputs: Any, j: int, show: Mapping[str, bool], score_threshold: float = 0.3,
              side: int = THUMB_SIDE) -> np.ndarray:
    """Sample ``j`` enlarged to ``side`` pixels with the shown tasks' errors drawn (boxes hit,
    false or missed; wrong pixels); the tasks told in words are left to the caption."""
    image, prediction, truth = _scaled(outputs.image(j), outputs.prediction(j), outputs.truth(j), side)
    names = _drawn_on_image(outputs.tasks, show, prediction)
    return to_numpy_image(_errors_on(outputs.tasks, image, prediction, truth, names, score_threshold))


@dataclass
class SampleView:
    """One sample large: panels ``[(caption, image)]`` (ground truth, prediction, errors, and the
    maps shown beside), a line of errors per task, each answer task's top answers, the colours."""

    panels: list[tuple[str, np.ndarray]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    top: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    truth_of: dict[str, str] = field(default_factory=dict)  # answer task -> the true answer's name
    legends: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def view(tasks: Mapping[str, Any], image: torch.Tensor, prediction: Mapping[str, Any],
         truth: Mapping[str, Any] | None, show: Mapping[str, bool], score_threshold: float = 0.3,
         opacity: float = 0.5, side: int = LARGE_SIDE, row: Mapping[str, Any] | None = None,
         panels: Sequence[str] = ("truth", "prediction", "errors")) -> SampleView:
    """Draw one image's ``prediction`` (and ``truth`` when it has one: an upload has none) for the
    tasks in ``show``; ``row``: the sample's error-table values, for the lines (computed here
    when not given and there is a truth)."""
    image, prediction, truth = _scaled(image, prediction, truth, side)
    truth = truth or {}
    names = _drawn_on_image(tasks, show, prediction)
    out = SampleView()
    if truth and "truth" in panels:
        gt = image
        for t in names:
            if t in truth:
                gt = _draw(tasks[t], gt, truth[t], opacity=opacity, score_threshold=0.0)
        out.panels.append(("Ground truth", to_numpy_image(gt)))
    if "prediction" in panels:
        drawn = image
        for t in names:
            drawn = _draw(tasks[t], drawn, prediction[t], opacity=opacity, score_threshold=score_threshold)
        out.panels.append(("Prediction", to_numpy_image(drawn)))
    if truth and "errors" in panels:
        out.panels.append(("Errors", to_numpy_image(_errors_on(tasks, image, prediction, truth, names, score_threshold))))
    for t in prediction:
        task = tasks[t]
        if not show.get(t, True) or not task.display.beside_caption:
            continue
        out.panels.append((task.display.beside_caption, to_numpy_image(map_image(task, image, prediction[t]))))
        if t in truth:
            out.panels.append((f"True {(task.title or t).lower()}", to_numpy_image(map_image(task, image, truth[t]))))
        if t in truth and task.display.errors_beside:  # its error drawing is a map of its own
            out.panels.append((f"{task.title or t} error",
                               to_numpy_image(task.display.draw_errors(image, prediction[t], truth[t]))))
    if row is None and truth:
        row = {}
        for t, task in tasks.items():
            if t in truth:
                cols = task.display.sample_errors([prediction[t]], [truth[t]], score_threshold)
                row.update({f"{t}/{k}": v[0] for k, v in cols.items()})
    for t, task in tasks.items():
        if not show.get(t, True) or t not in prediction:
            continue
        shown = task.display
        if row and f"{t}/failed" in row and t in truth:
            out.lines.append(task_line(task, row, t))
        else:
            out.lines.append(f"{task.title or t}: {shown.summarize(prediction[t], score_threshold)}")
        top = shown.top_k(prediction[t], 5)
        if top:
            out.top[t] = top
            if t in truth:
                out.truth_of[t] = shown.caption(truth[t]) or shown.summarize(truth[t])
        legend = []
        if shown.draws_legend:  # what the truth and the prediction colour, once each
            named = dict(shown.legend(prediction[t]))
            named.update(shown.legend(truth[t]) if t in truth else [])
            legend = list(named.items())
        legend += shown.error_legend() if t in truth else []
        if legend:
            out.legends[t] = legend
    return out


def sample_view(outputs: Any, j: int, show: Mapping[str, bool], score_threshold: float = 0.3,
                opacity: float = 0.5, side: int = LARGE_SIDE) -> SampleView:
    """Position ``j`` of a split's outputs, large (see :func:`view`)."""
    table = outputs.errors(score_threshold)
    return view(outputs.tasks, outputs.image(j), outputs.prediction(j), outputs.truth(j), show, score_threshold,
                opacity, side, row_of(table, j))


def run_view(predictor: Any, image: torch.Tensor, truth: Mapping[str, Any] | None, show: Mapping[str, bool],
             score_threshold: float = 0.3, side: int = THUMB_SIDE * 3 // 2) -> SampleView:
    """One run's prediction on ``image`` (uint8 ``(3, H, W)``), its errors against ``truth`` for
    the tasks this run has (a single-task baseline has one): the run-against-run column."""
    prediction, _ = predictor.predict(image)
    truth = {t: v for t, v in (truth or {}).items() if t in prediction}
    return view(predictor.tasks, image, prediction, truth, show, score_threshold, side=side,
                panels=("errors",) if truth else ("prediction",))


__all__ = ["LARGE_SIDE", "THUMB_SIDE", "SampleView", "in_words", "row_of", "run_view", "sample_view", "task_line",
           "thumbnail", "view"]
