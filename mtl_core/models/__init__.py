"""Backbones and multi-task architectures, registered by name."""
from __future__ import annotations

import math
import os

from torch import nn

from mtl_core.errors import ConfigError
from mtl_core.models import (  # noqa: F401  (registers)
    cgc,
    cross_stitch,
    dselect_k,
    hard_sharing,
    mmoe,
    mtan,
    pad_net,
    ple,
    segnet,
    segnet_mtan,
    single_task,
)
from mtl_core.models.backbones import BACKBONES, build_backbone
from mtl_core.models.base import ARCHITECTURES, HEADS, MultiTaskModel, register_architecture
from mtl_core.models.pretrained import missing_file_error
from mtl_core.registry import load_plugins

load_plugins()


def build_model(tasks: dict, cfg) -> MultiTaskModel:
    """The architecture named by ``cfg.architecture`` (a ModelConfig) over ``tasks`` ({name: Task})."""
    model = ARCHITECTURES.get(cfg.architecture, "model.architecture")(tasks, cfg)
    if getattr(cfg, "norm", "batch") == "group":
        to_group_norm(model)
    return model


def weights_file_errors(cfg) -> list[ConfigError]:
    """What is wrong with a ModelConfig's ``weights_path`` that can be told without reading it: a
    file that is not there (whether it fits the backbone is checked when the model is built)."""
    if not cfg.weights_path or os.path.isfile(os.path.expanduser(cfg.weights_path)):
        return []
    arch = ARCHITECTURES.get(cfg.architecture) if cfg.architecture in ARCHITECTURES else None
    name = getattr(arch, "uses_backbone", "") or cfg.backbone
    cls = BACKBONES.get(name) if name in BACKBONES else None
    return [missing_file_error(cfg.weights_path, cls, name)]


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


__all__ = ["ARCHITECTURES", "BACKBONES", "HEADS", "MultiTaskModel", "build_backbone", "build_model", "register_architecture",
           "weights_file_errors"]
