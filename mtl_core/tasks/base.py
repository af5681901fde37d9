"""The task protocol, in two halves: what a task learns, and how its predictions are shown.

- :class:`Task`, the learning half, is what a task writes: the ``kind`` of its label, its primary
  metric and its direction, and four methods, :meth:`~Task.head`, :meth:`~Task.loss`,
  :meth:`~Task.metrics` and :meth:`~Task.decode` (one prediction per image, in its kind's format).
  That is a whole task: ``tests/tasks/plugin_crowded.py`` is one, and it trains, is evaluated,
  drawn on Predict and inspected on Inspect like the built-in ones.
- :class:`Display`, the show half: drawing, chips, legend, a line of words, the ground truth in the
  prediction's format, the inspection's error columns, per-sample errors, confusions and curves,
  and how an ensemble fuses the kind's outputs. One subclass per kind of label (``DISPLAYS``, in
  :mod:`mtl_core.tasks.display`) serves every task of that kind; a task's is ``task.display``.

The kinds and the prediction each one's :meth:`~Task.decode` returns (each display's docstring says
more): ``classification`` ``{"label", "score", "probs"}``; ``count`` ``{"count", "score", "probs"}``;
``multilabel`` ``{"labels", "probs"}``; ``detection`` ``{"boxes", "scores", "labels"}``;
``segmentation`` ``{"mask"}``; ``depth`` ``{"depth"}``; ``normals`` ``{"normals"}``.

Why two objects rather than one class or mixins: a task that only learns writes nothing about
showing, and its ``kind`` alone picks how it is shown; a reader never has to work out which of
several base classes a method comes from; the display reads its task (class names, title, label)
but the task never reads its display, so nothing that trains can come to depend on drawing; and a
task that wants a drawing of its own sets :attr:`Task.display_class` to a subclass of its kind's
display that overrides only what differs.

Adding a task means adding one file with a subclass registered by ``@register_task("name")``:
inside the package, imported in ``tasks/__init__.py``; outside it, a module named in the
``MTL_PLUGINS`` environment variable (see :func:`mtl_core.registry.load_plugins`). Nothing else
switches on a task's name: its description, drawing order, overlay, legend and the words that
summarise a prediction all come from the task object and its display.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from mtl_core.config import TaskSpec
from mtl_core.data.base import DatasetInfo
from mtl_core.measures.types import Confusion, Curve, ErrorColumn
from mtl_core.registry import Registry
from mtl_core.tasks.drawing import HIT, WRONG

TASKS: Registry[type[Task]] = Registry("task")
# kind -> the class that makes any task of that kind (a column "left" of kind classification is a
# Classification named "left"); TASKS holds the named tasks, such as the scenes' seven shorthands
KINDS: Registry[type[Task]] = Registry("task kind")
DISPLAYS: Registry[type[Display]] = Registry("task kind")
register_display = DISPLAYS.register


def register_kind(kind: str) -> Callable[[type[Task]], type[Task]]:
    """``@register_kind("binary")``: the class that makes every task of ``kind`` from a spec."""
    add = KINDS.register(kind)

    def decorator(cls: type[Task]) -> type[Task]:
        if cls.kind != kind:
            raise ValueError(f"{cls.__name__} is of kind {cls.kind!r}, not {kind!r}")
        return add(cls)

    return decorator


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """``@register_task("name")``: add a :class:`Task` subclass to ``TASKS``; it must say its ``kind``."""
    add = TASKS.register(name)

    def decorator(cls: type[Task]) -> type[Task]:
        if not cls.kind:
            kinds = ", ".join(DISPLAYS.available()) or "see mtl_core.tasks.display"
            raise ValueError(f"task {name!r} declares no kind; set kind to what its label is ({kinds})")
        return add(cls)

    return decorator


class Task(ABC):
    """One task on shared features: the learning half of the protocol.

    A subclass sets :attr:`kind`, :attr:`primary` (the key of the primary metric) and
    :attr:`higher_is_better` (its direction; needed for the multi-task score Δm) and implements the
    four abstract methods. ``output`` is whatever the head returns for a batch (a tensor, or a dict
    of tensors with the batch dimension first); ``target`` is the batch's entry for this task (see
    :mod:`mtl_core.data.base`). Everything about showing it is :attr:`display`'s.
    """

    name: str = ""  # set by @register_task
    # what its label is (a key of DISPLAYS: "classification", "detection", ...): fixes the format of
    # decode's predictions and so picks the display that draws and inspects them
    kind: str = ""
    primary: str = ""
    higher_is_better: bool = True
    title: str = ""  # human-readable, for the dashboard
    description: str = ""  # what its ground truth means, for a person browsing the data
    # the dataset target this task learns from (its own name when empty): a new task can learn
    # from a label the datasets already supply (see labels())
    target_key: str = ""
    # the names of its classes when they are not the dataset's (a task that derives its own label);
    # an instance holds the names it uses, its own or the dataset's
    class_names: tuple[str, ...] = ()
    # a drawing of its own: a subclass of its kind's display; None: its kind's
    display_class: type[Display] | None = None

    def __init__(self, info: DatasetInfo, spec: TaskSpec | None = None, name: str = "") -> None:
        cls, spec = type(self), spec or TaskSpec()
        self.info, self.spec = info, spec
        self.name = name or cls.name
        preset = self.name == cls.name  # the task registered under this name, not another instance of its kind
        self.preset = preset
        # where its label is: the spec's column, else the class's own target, else its name
        self.key = spec.column or (cls.target_key if preset else "") or self.name
        self.class_names = tuple(spec.classes or cls.class_names or info.class_names)
        self.title = spec.title or (cls.title if preset else "") or sentence_case(self.name)
        self.description = cls.description if preset else f"{self.kind} label {self.key!r}"

    # ---- to learn: what every task writes --------------------------------------------------
    @abstractmethod
    def head(self, channels: int, stride: int = 1) -> nn.Module:
        """The task head: shared features ``(B, channels, h, w)`` -> this task's output.
        ``stride`` is the features' stride in image pixels, for a head that picks its own grid."""

    @abstractmethod
    def loss(self, output: Any, target: Any) -> Tensor:
        """A scalar loss for one batch (only its labelled samples: the trainer leaves the others out)."""

    @abstractmethod
    def metrics(self, outputs: Any, targets: Any) -> dict[str, float]:
        """Metrics over a whole evaluation set (outputs and targets concatenated over batches),
        :attr:`primary` among them."""

    @abstractmethod
    def decode(self, output: Any, image_size: tuple[int, int]) -> list[dict[str, Any]]:
        """One prediction per image, in the coordinates of an image of ``image_size = (H, W)``, in
        the format of its :attr:`kind` (see the module's docstring)."""

    # ---- to learn: optional ------------------------------------------------------------------
    def labels(self, target: Any) -> Any:
        """This task's label from its dataset target (a batch's, or one sample's): the target itself,
        unless the task derives its label (a crowded scene from the ``count``). The display reads
        the ground truth through it."""
        return target

    def random_labels(self, u: Tensor) -> Tensor:
        """A label per sample drawn from ``u`` (uniforms in [0, 1), ``(B,)``), in the target's
        shape, for ``data.label_noise``; only tasks with one class per image define it."""
        raise NotImplementedError

    @classmethod
    def takes_label_noise(cls) -> bool:
        """Whether ``data.label_noise`` can apply to this task (it defines :meth:`random_labels`)."""
        return cls.random_labels is not Task.random_labels

    # ---- helpers -----------------------------------------------------------------------------
    def target_name(self) -> str:
        """The key of this task's label in a sample's targets (its spec's column, its class's
        ``target_key``, or its name)."""
        return self.key

    def option(self, key: str, default: float) -> float:
        """A number from its spec's ``options`` (``ignore_index``, ``max_count`` ...), else ``default``."""
        return float(self.spec.options.get(key, default))

    def target_of(self, targets: dict[str, Any]) -> tuple[Any, Any]:
        """This task's label in a batch's (or a sample's) targets, and which samples have it
        (``targets["valid"]``, a bool tensor or flag; ``None`` when every sample has it)."""
        key = self.target_name()
        return targets[key], targets.get("valid", {}).get(key)

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (0-based into :attr:`class_names`)."""
        names = self.class_names
        return names[index] if 0 <= index < len(names) else f"class {index}"

    # ---- to show: its display ------------------------------------------------------------------
    @classmethod
    def display_type(cls) -> type[Display]:
        """The class of its display: :attr:`display_class`, or its kind's."""
        return cls.display_class or DISPLAYS.get(cls.kind, f"the kind of task {cls.name!r}")

    @functools.cached_property
    def display(self) -> Display:
        """How its predictions are drawn, worded and inspected (see :class:`Display`)."""
        return self.display_type()(self)


class Display:
    """How one kind of prediction is shown and inspected: the show half of the task protocol.

    A subclass per kind, registered with ``@register_display("<kind>")``, gives every task of that
    kind its drawing, words and errors; it reads what differs between those tasks from
    :attr:`task` (class names, title, :meth:`Task.labels`). ``prediction`` is one image's entry of
    :meth:`Task.decode`; a ground truth comes in the same format from :meth:`target_to_prediction`,
    without scores. The defaults here are neutral: a kind defines at least :meth:`draw` and
    :meth:`target_to_prediction`, and its error columns with a ``failed`` flag.
    """

    name: str = ""  # the kind it shows, set by @register_display
    draw_order: int = 100  # overlays are drawn in ascending order: dense maps first, labels on top
    # a caption when the prediction can also be shown as a picture of its own beside the overlay
    # (a depth map); empty for kinds that are only ever drawn on the image
    beside_caption: str = ""
    # how an ensemble fuses the members' outputs (see mtl_core.inference.ensemble); empty: it cannot
    fusion: str = ""
    # the kind labels the whole image (a class, a count), so its drawing is text only: chips that
    # draw() puts in a corner, and that render puts in a band above a small enlarged image instead,
    # where they cover none of its objects (see :meth:`chips`)
    image_level: bool = False
    corner: str = "top-left"  # where an image_level kind's chips go on the image
    # draw_errors returns a picture of its own (a map, wider by its colour bar), shown beside the
    # overlay rather than drawn on it (depth's error map)
    errors_beside: bool = False
    # draw() puts a legend of what it colours on the image unless called with show_legend=False;
    # render puts its entries in the band above a small enlarged image instead, the Inspect page
    # beside the picture (see :meth:`legend`)
    draws_legend: bool = False
    # the per-sample errors this kind reports, in table order; every kind has a ``failed`` flag
    # (1 where its answer counts as wrong), which the error browser counts across tasks
    error_columns: tuple[ErrorColumn, ...] = ()

    def __init__(self, task: Task) -> None:
        self.task = task

    @property
    def title(self) -> str:
        """The task's title (its name when it has none), for matrices and curves."""
        return self.task.title or self.task.name

    def target_to_prediction(self, target: Any) -> dict[str, Any]:
        """One sample's ground truth (its dataset target, read through :meth:`Task.labels`) in
        :meth:`Task.decode`'s format, so :meth:`draw` can show it; without the scores a prediction
        has (no ``score``, no ``scores``), so it is drawn and summarised without them ("star", not
        "star 1.00")."""
        raise NotImplementedError

    def draw(self, image: Tensor, prediction: dict[str, Any], opacity: float = 0.5,
             score_threshold: float = 0.3) -> Tensor:
        """Overlay one prediction (or a ground truth in the same format) on ``image``,
        a uint8 ``(3, H, W)`` tensor; returns a new uint8 ``(3, H, W)`` tensor.

        A ground truth carries no scores and is drawn without numbers. A kind with a
        :attr:`beside_caption` also takes ``show_scale=True``, asked for when its picture is shown
        on its own: it may then return an image widened by its scale."""
        raise NotImplementedError

    def chips(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """An :attr:`image_level` kind's drawing as ``[(text, colour)]`` ("star 0.93"; "star" for a
        ground truth); empty for a kind that draws on the pixels."""
        return []

    def error_chips(self, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> list[tuple[str, tuple[int, int, int]]]:
        """An :attr:`image_level` kind's :meth:`draw_errors` as ``[(text, colour)]``."""
        return []

    def summarize(self, prediction: dict[str, Any], score_threshold: float = 0.3) -> str:
        """What a person would read off the overlay, in a few words ("star (93%)")."""
        keys = ", ".join(sorted(prediction)) if isinstance(prediction, dict) else type(prediction).__name__
        return f"({keys})"

    def caption(self, prediction: dict[str, Any]) -> str:
        """A very short label for a thumbnail's caption ("star", "2 objects"); empty for none."""
        return ""

    def legend(self, prediction: dict[str, Any]) -> list[tuple[str, str]]:
        """``[(name, "#rrggbb")]`` of what the overlay colours, shown beside the picture."""
        return []

    # ---- inspection (see mtl_core.inspection) ------------------------------------------------
    def sample_errors(self, predictions: list[dict[str, Any]], truths: list[dict[str, Any] | None],
                      score_threshold: float = 0.3) -> dict[str, list]:
        """``{column: one value per sample}`` for :attr:`error_columns`, from :meth:`Task.decode`'s
        predictions and the ground truths in the same format (:meth:`target_to_prediction`);
        a sample whose truth is ``None`` (unlabelled for this task) gets NaN (text: "")."""
        return {}

    def confusions(self, predictions: list[dict[str, Any]], truths: list[dict[str, Any] | None],
                   score_threshold: float = 0.3) -> list[Confusion]:
        """Confusion matrices over a set (none when the kind has no classes to confuse)."""
        return []

    def curves(self, predictions: list[dict[str, Any]], truths: list[dict[str, Any] | None],
               score_threshold: float = 0.3) -> list[Curve]:
        """Per-class precision-recall curves or a reliability diagram over a set (or none)."""
        return []

    def top_k(self, prediction: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most likely answers with their probabilities (empty for a dense kind)."""
        return []

    def draw_errors(self, image: Tensor, prediction: dict[str, Any], truth: dict[str, Any],
                    score_threshold: float = 0.3) -> Tensor:
        """``prediction`` drawn against ``truth`` on ``image`` (uint8 ``(3, H, W)``), right and
        wrong told apart (boxes hit, false or missed; wrongly labelled pixels); by default the
        prediction alone. Both are in the image's coordinates. With :attr:`errors_beside` the result
        is a picture of its own (possibly wider than ``image``), not an overlay."""
        return self.draw(image, prediction, score_threshold=score_threshold)

    def error_legend(self) -> list[tuple[str, str]]:
        """``[(meaning, "#rrggbb")]`` of the colours :meth:`draw_errors` uses."""
        return []


def sentence_case(name: str) -> str:
    """A task's name as a title: ``left_digit`` -> "Left digit" (the rest of its case kept)."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def percent(x: float) -> str:
    """A share as a whole percentage, "<1%" for a sliver."""
    return "<1%" if 0 < x < 0.005 else f"{x:.0%}"


def verdict(answer: str, score: float | None, truth: str) -> tuple[str, tuple[int, int, int]]:
    """One image-level answer against the truth, as a chip: ``("star ✓ 93%", green)`` when right,
    ``("circle ✗ 62% (truth: star)", red)`` when wrong (no percentage without a score)."""
    sure = f" {percent(score)}" if score is not None else ""
    if answer == truth:
        return f"{answer} ✓{sure}", HIT
    return f"{answer} ✗{sure} (truth: {truth})", WRONG


def top_probabilities(probs: Any, names: list[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` largest of ``probs`` with their names, most likely first (ties: lower index)."""
    p = [float(v) for v in (probs or [])]
    order = sorted(range(len(p)), key=lambda i: (-p[i], i))[: max(0, int(k))]
    return [(names[i], p[i]) for i in order]
