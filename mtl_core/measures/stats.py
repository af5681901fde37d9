"""The measures behind the tasks' inspection methods, shared by tasks of one kind: per-sample
answers of a single-label classifier, confusion matrices from (truth, prediction) pairs, a
precision-recall curve from ranked hits, and a reliability diagram.

Everything returns plain Python (see :mod:`mtl_core.measures.types`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mtl_core.measures.map_metric import average_precision
from mtl_core.measures.types import Confusion, Curve

NAN = float("nan")
RELIABILITY_BINS = 10


def single_label_errors(predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any] | None], key: str,
                        name: Callable[[int], str]) -> dict[str, list]:
    """``failed``, ``confidence``, ``true_prob``, ``truth`` and ``predicted`` of a one-answer
    task (``key``: the prediction's answer, "label" or "count"); ``name`` words an answer."""
    out: dict[str, list] = {"failed": [], "confidence": [], "true_prob": [], "truth": [], "predicted": []}
    for p, t in zip(predictions, truths, strict=True):
        if t is None:  # unlabelled: no row of this task's errors, so no summary or filter counts it
            for k in ("failed", "confidence", "true_prob"):
                out[k].append(NAN)
            out["truth"].append("")
            out["predicted"].append("")
            continue
        guess, true = int(p[key]), int(t[key])
        out["confidence"].append(float(p.get("score", max(p.get("probs") or [NAN]))))
        out["predicted"].append(name(guess))
        probs = p.get("probs") or []
        out["failed"].append(float(guess != true))
        out["true_prob"].append(float(probs[true]) if 0 <= true < len(probs) else NAN)
        out["truth"].append(name(true))
    return out


def per_sample(columns: Sequence[Any], predictions: Sequence[dict[str, Any]], truths: Sequence[dict[str, Any] | None],
               measure: Callable[[dict[str, Any], dict[str, Any]], dict[str, float] | None]) -> dict[str, list]:
    """``{column: one value per sample}``: ``measure(prediction, truth)`` gives a sample's values
    by column name; a sample without a truth, or one ``measure`` finds nothing to score in
    (``None``), gets NaN in every column."""
    out: dict[str, list] = {c.name: [] for c in columns}
    for p, t in zip(predictions, truths, strict=True):
        values = None if t is None else measure(p, t)
        for name, column in out.items():
            column.append(NAN if values is None else float(values[name]))
    return out


def labelled(truths: Sequence[Any]) -> list[int]:
    """Positions of the samples that have a truth."""
    return [i for i, t in enumerate(truths) if t is not None]


def confusion_from_pairs(title: str, rows: list[str], cols: list[str], pairs: Sequence[tuple[int, int, int, float]],
                         unit: str = "samples", note: str = "") -> Confusion:
    """A matrix from ``(row, col, sample, weight)`` items: each adds ``weight`` to the cell's count
    (1 for a sample or a box, a pixel count for a pixel matrix); a cell lists each sample once,
    the one with the most weight in the cell first (ties: lower position first)."""
    counts = [[0] * len(cols) for _ in rows]
    weight: dict[tuple[int, int], dict[int, float]] = {}
    for r, c, sample, w in pairs:
        counts[r][c] += int(w)
        cell = weight.setdefault((r, c), {})
        cell[sample] = cell.get(sample, 0.0) + float(w)
    samples = {cell: sorted(by, key=lambda s: (-by[s], s)) for cell, by in weight.items()}
    return Confusion(title, rows, cols, counts, samples, unit, note)


def pr_curve(title: str, scores: Sequence[float], hits: Sequence[bool], num_truth: int,
             score_threshold: float | None = None, ap: float | None = None, ap_name: str = "AP50") -> Curve:
    """Precision against recall over detections ranked by descending score (``hits``: whether
    each matched a truth), with COCO's 101-point interpolated AP (as :mod:`~mtl_core.measures.map_metric`
    computes mAP, so the curve's AP and the run's AP50 agree; a task whose metric defines AP
    otherwise passes its own ``ap``) and the operating point at ``score_threshold``."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    h = torch.as_tensor(list(hits), dtype=torch.bool)
    order = torch.sort(s, descending=True, stable=True).indices
    s, h = s[order], h[order]
    tp = h.long().cumsum(0).double()
    fp = torch.arange(1, len(h) + 1, dtype=torch.float64) - tp
    recall = (tp / num_truth) if num_truth else torch.zeros_like(tp)
    precision = tp / (tp + fp).clamp(min=1)
    if ap is None:
        ap = float(average_precision(h[None], num_truth)[0]) if num_truth else NAN
    point = None
    if score_threshold is not None and len(s):
        above = int((s >= score_threshold).sum())
        point = (float(recall[above - 1]), float(precision[above - 1])) if above else (0.0, 1.0)
    return Curve("pr", title, [0.0, *recall.tolist()], [1.0, *precision.tolist()], ap, ap_name, point=point)


def reliability(title: str, confidences: Sequence[float], correct: Sequence[bool], bins: int = RELIABILITY_BINS) -> Curve:
    """A reliability diagram and the expected calibration error (Guo, Pleiss, Sun and Weinberger,
    "On Calibration of Modern Neural Networks", ICML 2017): ``bins`` equal-width confidence bins,
    each with its mean confidence (``x``; the bin's centre when empty), accuracy (``y``; NaN when
    empty) and count; ECE is the count-weighted mean of ``|accuracy - confidence|``. Bin ``m``
    holds confidences in ``(m / bins, (m + 1) / bins]``, as the paper's ``I_m`` (a confidence of
    exactly 0.5 is in the bin below 0.5, not above it); 0 joins the first bin."""
    conf = torch.as_tensor(list(confidences), dtype=torch.float64)
    right = torch.as_tensor(list(correct), dtype=torch.float64)
    edges = torch.arange(bins + 1, dtype=torch.float64) / bins  # (bins + 1,) the doubles nearest m / bins
    which = (torch.searchsorted(edges, conf, side="left") - 1).clamp(0, bins - 1)  # right-closed bins
    xs, ys, counts, ece = [], [], [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        counts.append(n)
        if n == 0:
            xs.append((b + 0.5) / bins)
            ys.append(NAN)
            continue
        mean_conf, acc = float(conf[inside].mean()), float(right[inside].mean())
        xs.append(mean_conf)
        ys.append(acc)
        ece += n * abs(acc - mean_conf)
    total = len(conf)
    return Curve("reliability", title, xs, ys, ece / total if total else NAN, "ECE", counts=counts)
