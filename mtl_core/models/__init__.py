"""Backbones and multi-task architectures, registered by name."""
from __future__ import annotations

import math

from torch import nn

from mtl_core.models import cgc, cross_stitch, dselect_k, hard_sharing, mmoe, mtan, pad_net, ple, single_task  # noqa: F401  (registers)
from mtl_core.models.backbones import BACKBONES, build_backbone
from mtl_core.models.base import ARCHITECTURES, MultiTaskModel, register_architecture
from mtl_core.registry import load_plugins

load_plugins()


def build_model(tasks: dict, cfg) -> MultiTaskModel:
    """The architecture named by ``cfg.architecture`` (a ModelConfig) over ``tasks`` ({name: Task})."""
    model = ARCHITECTURES.get(cfg.architecture, "model.architecture")(tasks, cfg)
    if getattr(cfg, "norm", "batch") == "group":
        to_group_norm(model)
    return model


def to_group_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a GroupNorm (Wu and He, ECCV 2018) of the same width, in place:
    statistics per sample, so results do not depend on how a batch is split across processes."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(math.gcd(8, c), c))
        else:
            to_group_norm(child)
    return module


__all__ = ["ARCHITECTURES", "BACKBONES", "MultiTaskModel", "build_backbone", "build_model", "register_architecture"]
