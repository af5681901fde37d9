"""The vision tasks, one file each, registered by name (plus any a plugin registers, see
:func:`mtl_core.registry.load_plugins`), and how each kind of task is shown (:mod:`.display`)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mtl_core.registry import load_plugins
from mtl_core.tasks import classification, count, depth, detection, multilabel, segmentation  # noqa: F401  (registers)
from mtl_core.tasks.base import DISPLAYS, TASKS, Display, Task, register_display, register_task
from mtl_core.tasks.display import answers, boxes, maps, masks, presence  # noqa: F401  (registers the kinds)

load_plugins()


def build_task(name: str, info) -> Task:
    return TASKS.get(name, "tasks")(info)


def supported_tasks(targets: Iterable[str]) -> list[str]:
    """The registered tasks that learn from one of ``targets`` (the labels a dataset supplies), in registry order."""
    have = set(targets)
    return [t for t in TASKS.available() if TASKS.get(t).target_name() in have]


def task_meta(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{task: {"primary", "higher_is_better", "title", "description", "fusion"}}`` from the task
    registry, for pages that must not import torch; a name it does not know (a run recorded with a
    plugin that is not loaded now) gets neutral defaults rather than an error."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        cls = TASKS.get(name) if name in TASKS else None
        out[name] = {"primary": getattr(cls, "primary", ""), "higher_is_better": bool(getattr(cls, "higher_is_better", True)),
                     "title": getattr(cls, "title", "") or name.replace("_", " ").capitalize(),
                     "description": getattr(cls, "description", ""),
                     "fusion": cls.display_type().fusion if cls is not None else ""}
    return out


__all__ = ["DISPLAYS", "TASKS", "Display", "Task", "build_task", "register_display", "register_task", "supported_tasks",
           "task_meta"]
