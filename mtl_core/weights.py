"""The task weights a person sets: Setup's sliders, a retune on the Live page, a study's factor,
``--weights`` on the command line. One value type with its rules (which tasks, the range, what
"all zero" means, the normalised preference) so that every place that shows, checks or applies
them agrees.

A run's weights history is its events: the config holds the weights it started with, and each
change the trainer applied is a ``"weights"`` event (``{"old": ..., "new": ...}``, every task's
weight). :func:`weights_in_force` reads the two together; nothing else keeps a copy.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_core.errors import ConfigError

# One range everywhere (Setup, Live, studies, the CLI, a config file). Weights are relative: 10 to
# 0.1 is already a ratio of 100. A loss in other units (a depth error in millimetres) is scaled
# with ``data.loss_scale`` instead, which says what it means.
WEIGHT_MIN, WEIGHT_MAX = 0.0, 10.0
WEIGHT_STEP = 0.05  # the sliders' resolution
DEFAULT_WEIGHT = 1.0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def weight_errors(tasks: Sequence[str], weights: Mapping[str, Any], uses_weights: str = "weights") -> list[ConfigError]:
    """What is wrong with task weights for ``tasks``: a name that is not one of them, a value
    outside [WEIGHT_MIN, WEIGHT_MAX], or every weight zero for a method that uses them
    (``uses_weights``, see :class:`mtl_core.weighting.base.Weighting`; a missing task counts as 1)."""
    e = []
    for t, v in weights.items():
        if t not in tasks:
            e.append(ConfigError(f"weighting.weights.{t}", f"{t!r} is not a selected task; selected: {', '.join(tasks)}"))
        elif not _number(v) or not WEIGHT_MIN <= v <= WEIGHT_MAX:
            e.append(ConfigError(f"weighting.weights.{t}",
                                 f"must be in [{WEIGHT_MIN:g}, {WEIGHT_MAX:g}], got {v!r}; weights are relative (lower "
                                 "the other tasks' instead), and a loss in other units is scaled with data.loss_scale"))
    if tasks and uses_weights and all(weights.get(t, DEFAULT_WEIGHT) == 0 for t in tasks):
        e.append(ConfigError("weighting.weights", "all task weights are zero; give at least one task a weight above 0"))
    return e


@dataclass(frozen=True)
class TaskWeights(Mapping[str, float]):
    """Every task's weight, in the tasks' order; checked when made (a ConfigError naming the
    field otherwise). Read it as a mapping: ``w["depth"]``, ``dict(w)``."""

    tasks: tuple[str, ...]
    values: tuple[float, ...]

    @classmethod
    def of(cls, tasks: Sequence[str], weights: Mapping[str, Any] | None = None,
           uses_weights: str = "weights") -> TaskWeights:
        """``weights`` for ``tasks`` (a task it leaves out weighs 1), checked."""
        weights = {str(k): v for k, v in (weights or {}).items()}
        errors = weight_errors(tuple(tasks), weights, uses_weights)
        if errors:
            raise errors[0]
        return cls(tuple(tasks), tuple(float(weights.get(t, DEFAULT_WEIGHT)) for t in tasks))

    def changed(self, new: Mapping[str, Any], uses_weights: str = "weights") -> TaskWeights:
        """These weights with ``new`` applied (some tasks or all), checked by the same rules."""
        return TaskWeights.of(self.tasks, {**self, **new}, uses_weights)

    def normalised(self) -> tuple[float, ...]:
        """As a preference vector summing to 1 (equal when every weight is 0)."""
        total = sum(self.values)
        return tuple(v / total for v in self.values) if total > 0 else tuple(1.0 / len(self.values) for _ in self.values)

    def __getitem__(self, task: str) -> float:
        return self.values[self.tasks.index(task)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


def check_weights(tasks: Sequence[str], weights: Mapping[str, Any], method: Any) -> TaskWeights:
    """Weights set by a person for a run of ``method`` (a weighting method or its class), checked;
    a method that sets every task's weight itself refuses them and says why."""
    if not getattr(method, "uses_weights", ""):
        raise ConfigError("weighting.weights", f"{method.name} does not use task weights set by a person: "
                          f"{getattr(method, 'weights_note', '') or 'it sets every weight itself'}")
    return TaskWeights.of(tasks, weights, method.uses_weights)


def weights_in_force(config: Mapping[str, Any], events: Sequence[Mapping[str, Any]] = ()) -> dict[str, float]:
    """A run's task weights now: those its config (a stored config dict) started with, every task
    given one, replaced by the last weight change its trainer applied (``events``: the run's
    ``"weights"`` events, oldest first, as :meth:`RunStore.events` returns them)."""
    tasks = list(config.get("tasks", []))
    weights = {t: float(config.get("weighting", {}).get("weights", {}).get(t, DEFAULT_WEIGHT)) for t in tasks}
    for event in events:
        new = (event.get("payload") or {}).get("new") or {}
        weights.update({t: float(v) for t, v in new.items() if t in weights})
    return weights
