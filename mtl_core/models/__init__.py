"""Backbones and multi-task architectures, registered by name."""
from __future__ import annotations

from mtl_core.models.backbones import BACKBONES, build_backbone
from mtl_core.models.base import ARCHITECTURES, MultiTaskModel, register_architecture
from mtl_core.models import cross_stitch, hard_sharing, mmoe, mtan, single_task  # noqa: F401  (registers)


def build_model(tasks: dict, cfg) -> MultiTaskModel:
    """The architecture named by ``cfg.architecture`` (a ModelConfig) over ``tasks`` ({name: Task})."""
    return ARCHITECTURES.get(cfg.architecture, "model.architecture")(tasks, cfg)


__all__ = ["ARCHITECTURES", "BACKBONES", "MultiTaskModel", "build_backbone", "build_model", "register_architecture"]
