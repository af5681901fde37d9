"""The vision tasks, one file each, registered by name."""
from mtl_core.tasks import classification, count, depth, detection, multilabel, segmentation  # noqa: F401  (registers)
from mtl_core.tasks.base import TASKS, Task, register_task

__all__ = ["TASKS", "Task", "register_task", "build_task"]


def build_task(name: str, info) -> Task:
    return TASKS.get(name, "tasks")(info)
