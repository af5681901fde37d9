"""The multi-task model interface every architecture implements.

``forward(images)`` returns ``{task: output}``. ``forward_train(images, rep_grad)`` also
returns the :class:`SharedRep` when a gradient method works on the
shared representation. ``shared_parameters()`` are the parameters every task updates (the
ones gradient methods combine per-task gradients on).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from mtl_core.errors import ConfigError
from mtl_core.models.aspp import ASPPHead
from mtl_core.registry import Registry


class SharedRep:
    """The shared representation split per task for ``rep_grad`` (LibMTL's trick).

    ``features`` still carries the graph to the shared backbone; ``per_task[t]`` is a detached
    copy that requires grad, fed to task ``t``'s head, so each task's backward stops there.
    """

    def __init__(self, features: Tensor, tasks: Sequence[str]) -> None:
        self.features = features
        self.per_task = {t: features.detach().requires_grad_(True) for t in tasks}


ARCHITECTURES: Registry = Registry("architecture")
register_architecture = ARCHITECTURES.register


HEADS = ("", "aspp")  # model.head: each task's own head on the trunk, or DeepLab-v3's ASPP before it


def task_head(task: Any, channels: int, stride: int, kind: str = "") -> nn.Module:
    """``task``'s head on features of ``channels`` at ``stride``: its own (``kind=""``), or behind an
    ASPP module of its own (``"aspp"``, see ``aspp.py``)."""
    if kind == "":
        return task.head(channels, stride=stride)
    if kind == "aspp":
        return ASPPHead(task, channels, stride)
    raise ConfigError("model.head", f"unknown head {kind!r}; choose one of: '' (each task's own), aspp")


def task_heads(tasks: dict[str, Any], trunk: nn.Module, kind: str = "") -> nn.ModuleDict:
    """One head per task on ``trunk``'s features, given their channels and stride (``kind``: ``model.head``)."""
    return nn.ModuleDict({t: task_head(task, trunk.channels, trunk.stride, kind) for t, task in tasks.items()})


def head_kind(cfg) -> str:
    """A ModelConfig's ``head`` (``""`` for configs made before it existed)."""
    return getattr(cfg, "head", "")


class MultiTaskModel(nn.Module):
    supports_rep = False  # can a single shared representation be split per task?
    citation = ""

    def __init__(self, tasks: dict[str, Any], cfg) -> None:
        super().__init__()
        self.task_names = list(tasks)

    def shared_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def forward(self, images: Tensor) -> dict[str, Any]:
        outputs, _ = self.forward_train(images, rep_grad=False)
        return outputs

    def forward_train(self, images: Tensor, rep_grad: bool = False) -> tuple[dict[str, Any], SharedRep | None]:
        raise NotImplementedError

    def _no_rep(self) -> None:
        raise ConfigError("weighting.rep_grad", f"the {self.name} architecture has no single shared representation; "
                          "turn rep_grad off or use hard_sharing")
