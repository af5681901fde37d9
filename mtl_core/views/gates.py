"""The gates of a mixture-of-experts model (MMoE, CGC, PLE, DSelect-k) for one image, as plain
floats for the Predict page: how much of each expert each task's head sees. PAD-Net's
distillation gates likewise: how much of each other task's message each task lets through."""
from __future__ import annotations

from typing import Any

import torch

from mtl_core.inference.predictor import INFER_LOCK


def _model(predictor: Any) -> Any:
    return getattr(predictor, "model", None)


def has_gates(predictor: Any) -> bool:
    """Whether the predictor's model mixes experts by per-task gates (``gate_values``)."""
    return callable(getattr(_model(predictor), "gate_values", None))


def has_distillation(predictor: Any) -> bool:
    """Whether the predictor's model passes gated messages between tasks (PAD-Net's ``distillation_gates``)."""
    return callable(getattr(_model(predictor), "distillation_gates", None))


def gate_values(predictor: Any, image: torch.Tensor) -> dict[str, dict[str, float]]:
    """``{task: {expert: weight}}`` for ``image`` (each task's weights sum to 1); ``{}`` for a model without gates."""
    if not has_gates(predictor):
        return {}
    with INFER_LOCK, torch.no_grad():
        values = predictor.model.gate_values(predictor.model_input(image))
    return {t: {e: float(w) for e, w in experts.items()} for t, experts in values.items()}


def distillation_values(predictor: Any, image: torch.Tensor) -> dict[str, dict[str, float]]:
    """``{receiving task: {sending task: mean gate in (0, 1)}}`` for ``image``; ``{}`` for a model without distillation."""
    if not has_distillation(predictor):
        return {}
    with INFER_LOCK, torch.no_grad():
        values = predictor.model.distillation_gates(predictor.model_input(image))
    return {t: {s: float(g) for s, g in sources.items()} for t, sources in values.items()}
