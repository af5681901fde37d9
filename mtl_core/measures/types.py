"""What inspecting a model hands to the pages: plain Python (lists, numbers, strings), never
torch, so the dashboard can draw it without importing the engine's tensors."""
from __future__ import annotations

from dataclasses import dataclass, field

# what a column's values mean, for the filters a page builds from it
FLAG, COUNT, FRACTION, VALUE, TEXT = "flag", "count", "fraction", "value", "text"


@dataclass(frozen=True)
class ErrorColumn:
    """One per-sample error a task reports (a column of the error table).

    ``kind``: ``flag`` (1 = wrong, 0 = right), ``count`` (whole numbers, e.g. missed boxes),
    ``fraction`` (0 to 1, e.g. IoU), ``value`` (a non-negative number, e.g. abs-rel) or ``text``
    (a class name). ``worse``: the end of the scale that is the worse answer, ``"high"`` or
    ``"low"`` (empty for text)."""

    name: str
    title: str
    kind: str
    worse: str = "high"
    help: str = ""


@dataclass
class Confusion:
    """A confusion matrix: ``counts[r][c]`` items whose truth is ``rows[r]`` and prediction
    ``cols[c]``; ``samples[(r, c)]`` the positions of the samples in that cell, the most affected
    first (a pixel matrix lists the samples with pixels in the cell, most pixels first)."""

    title: str
    rows: list[str]
    cols: list[str]
    counts: list[list[int]]
    samples: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    unit: str = "samples"
    note: str = ""

    def total(self) -> int:
        return int(sum(sum(r) for r in self.counts))


@dataclass
class Curve:
    """A per-class curve: a precision-recall curve (``kind="pr"``: ``x`` recall, ``y``
    precision, ``summary`` its AP; ``point`` the (recall, precision) at the score threshold) or a
    reliability diagram (``kind="reliability"``: ``x`` mean confidence per bin, ``y`` accuracy
    per bin, ``counts`` samples per bin, ``summary`` the expected calibration error)."""

    kind: str
    title: str
    x: list[float]
    y: list[float]
    summary: float
    summary_name: str
    counts: list[int] = field(default_factory=list)
    point: tuple[float, float] | None = None
