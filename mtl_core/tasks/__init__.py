"""The vision tasks, one file each, registered by name (plus any a plugin registers, see
:func:`mtl_core.registry.load_plugins`), and how each kind of task is shown (:mod:`.display`)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.errors import ConfigError
from mtl_core.registry import load_plugins
from mtl_core.tasks import (  # noqa: F401  (registers)
    binary,
    classification,
    count,
    depth,
    detection,
    multilabel,
    normals,
    regression,
    segmentation,
)
from mtl_core.tasks.base import (
    DISPLAYS,
    KINDS,
    TASKS,
    Display,
    Task,
    register_display,
    register_kind,
    register_task,
    sentence_case,
)
from mtl_core.tasks.display import answers, boxes, maps, masks, normal_maps, presence, values  # noqa: F401  (registers the kinds)

load_plugins()


def merge_spec(base: TaskSpec | None, over: TaskSpec | None) -> TaskSpec:
    """``over``'s fields that are set laid over ``base``'s (a config's spec over a dataset's:
    the config may declare a kind and keep the classes the dataset found)."""
    base, over = base or TaskSpec(), over or TaskSpec()
    return TaskSpec(kind=over.kind or base.kind, column=over.column or base.column, classes=over.classes or base.classes,
                    loss=over.loss or base.loss, title=over.title or base.title, options={**base.options, **over.options})


def task_class(name: str, spec: TaskSpec | None = None) -> type[Task]:
    """The class that makes task ``name``: the task registered under that name (a built-in
    shorthand or a plugin), unless its spec asks for another kind; else its kind's class."""
    spec = spec or TaskSpec()
    if name in TASKS and (not spec.kind or spec.kind == TASKS.get(name).kind) and not spec.column:
        return TASKS.get(name)
    if not spec.kind:
        raise ConfigError("tasks", f"unknown task {name!r}: neither a built-in task ({', '.join(TASKS.available())}) "
                          f"nor a column of the dataset; declare it in task_specs with its kind ({', '.join(KINDS.available())})")
    return KINDS.get(spec.kind, f"task_specs.{name}.kind")


def build_task(name: str, info: DatasetInfo, spec: TaskSpec | None = None) -> Task:
    """Task ``name`` on a dataset described by ``info``: its spec is the dataset's (a label table's
    column) with ``spec`` (the config's) laid over it."""
    spec = merge_spec(info.specs.get(name), spec)
    return task_class(name, spec)(info, spec, name)


def build_tasks(config: Any, info: DatasetInfo) -> dict[str, Task]:
    """Every task of an experiment config, in its order."""
    return {name: build_task(name, info, config.task_specs.get(name)) for name in config.tasks}


def target_kinds(tasks: Mapping[str, Task]) -> dict[str, str]:
    """Target key -> kind for built tasks: what an augmenter needs to move each label."""
    return {task.target_name(): task.kind for task in tasks.values()}


def supported_tasks(targets: Iterable[str], specs: Mapping[str, Any] | None = None) -> list[str]:
    """The tasks a dataset can teach: the registered tasks that learn from one of ``targets`` (the
    labels it supplies), in registry order, then the tasks its ``specs`` describe (a label table's
    columns), in their order."""
    have = set(targets)
    named = [t for t in TASKS.available() if (TASKS.get(t).target_key or t) in have]
    return named + [t for t in (specs or {}) if t not in named]


def spec_kind(spec: Any) -> str:
    """The kind of a spec given as a TaskSpec or as a config dict's entry (empty when none)."""
    if isinstance(spec, TaskSpec):
        return spec.kind
    return str(spec.get("kind", "")) if isinstance(spec, Mapping) else ""


def task_meta(names: Iterable[str], specs: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``{task: {"primary", "higher_is_better", "title", "description", "fusion", "kind"}}`` from
    the registries, for pages that must not import torch; ``specs`` (a config's ``task_specs``,
    as TaskSpecs or JSON dicts) say the kind of a task that is not a registered name. A name that
    neither knows (a run recorded with a plugin that is not loaded now) gets neutral defaults
    rather than an error."""
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = (specs or {}).get(name)
        kind = spec_kind(spec)
        cls = TASKS.get(name) if name in TASKS and (not kind or TASKS.get(name).kind == kind) else \
            KINDS.get(kind) if kind in KINDS else None
        preset = cls is not None and cls.name == name
        title = (spec.get("title", "") if isinstance(spec, Mapping) else getattr(spec, "title", "")) or \
            (getattr(cls, "title", "") if preset else "") or sentence_case(name)
        out[name] = {"primary": getattr(cls, "primary", ""), "higher_is_better": bool(getattr(cls, "higher_is_better", True)),
                     "title": title, "description": getattr(cls, "description", "") if preset else "",
                     "fusion": cls.display_type().fusion if cls is not None else "", "kind": getattr(cls, "kind", kind)}
    return out


__all__ = ["DISPLAYS", "KINDS", "TASKS", "Display", "Task", "build_task", "build_tasks", "merge_spec", "register_display",
           "register_kind", "register_task", "supported_tasks", "target_kinds", "task_class", "task_meta"]
