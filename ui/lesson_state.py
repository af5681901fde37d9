"""A lesson's state as it lives in the URL, read and written without Streamlit (so it is tested
as plain functions): which lesson, which "try next" variation, the values of its controls, the
seeds, the instructor flag and the study that is showing.

``?lesson=why_together&try=all_labels&knobs=c1.…&seeds=4&instructor=1&predict=1&study=…``

The controls' values travel as one compact token (:func:`mtl_core.config.to_link`). A link that
does not parse or names what the lesson does not have is refused piece by piece: each problem is
reported, and that piece falls back to the lesson's default, so a damaged link still opens a
lesson.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtl_core.config import from_link, to_link
from mtl_core.errors import ConfigError

MAX_SEEDS = 10


@dataclass
class LessonState:
    lesson: str = ""
    variation: str = ""
    knobs: dict[str, float] = field(default_factory=dict)
    seeds: int | None = None
    instructor: bool = False
    study: str = ""
    predict: bool = False  # ask each student to predict the verdict before it shows

    def params(self) -> dict[str, str]:
        """The query parameters that hold this state (only what differs from a fresh lesson)."""
        out = {"lesson": self.lesson}
        if self.variation:
            out["try"] = self.variation
        if self.knobs:
            out["knobs"] = to_link(self.knobs)
        if self.seeds is not None:
            out["seeds"] = str(self.seeds)
        if self.instructor:
            out["instructor"] = "1"
        if self.predict:
            out["predict"] = "1"
        if self.study:
            out["study"] = self.study
        return out


def read(params: Mapping[str, str], lessons: list[Any]) -> tuple[LessonState, list[str]]:
    """The state a URL's query parameters hold, checked against the lessons; and what was wrong."""
    problems: list[str] = []
    by_id = {x.id: x for x in lessons}
    state = LessonState(instructor=params.get("instructor", "") in ("1", "true", "yes"),
                        predict=params.get("predict", "") in ("1", "true", "yes"))
    lid = params.get("lesson", "")
    if lid and lid not in by_id:
        problems.append(f"There is no lesson {lid!r} (lessons: {', '.join(by_id) or 'none'}); showing the first lesson.")
        lid = ""
    state.lesson = lid or (lessons[0].id if lessons else "")
    lesson = by_id.get(state.lesson)
    if lesson is None:
        return state, problems
    vid = params.get("try", "")
    if vid:
        try:
            lesson.variation(vid)
            state.variation = vid
        except ConfigError as e:
            problems.append(f"This link asks for a variation the lesson does not have ({e.message}); showing the lesson itself.")
    token = params.get("knobs", "")
    if token:
        try:
            knobs = from_link(token, "knobs")
            if not isinstance(knobs, dict):
                raise ConfigError("knobs", "the link's controls are not a set of values")
            checked = {}
            for path, value in knobs.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"knob {path}", f"expected a number, got {value!r}"[:120])
                checked[str(path)] = float(value)
            lesson.spec(checked)  # every control known and in range, the study valid
            state.knobs = checked
        except ConfigError as e:
            problems.append(f"The link's control values were refused ({e}); using the lesson's own.")
    seeds = params.get("seeds", "")
    if seeds:
        if seeds.isdigit() and 2 <= int(seeds) <= MAX_SEEDS:
            state.seeds = int(seeds)
        else:
            problems.append(f"seeds={seeds!r} is not a number of seeds from 2 to {MAX_SEEDS}; using the lesson's own.")
    state.study = params.get("study", "")
    return state, problems
