"""Lesson presets: JSON files under ``assets/lessons/``, checked when loaded.

A lesson file::

    {"id": "why_together", "order": 1, "title": "...", "text": "markdown, about 100 words",
     "paper": {"title": "...", "url": "https://..."},
     "study": {a study spec: base, factors, seeds, baselines},
     "charts": [{"kind": "curves", "task": "segmentation"}, {"kind": "effect"}, ...],
     "effect": {"task", "a", "b", "sign", "text"}  (see mtl_core.lessons.effect),
     "knobs": [{"path": "data.label_fraction.segmentation", "label": "...", "min": 0.01, "max": 1, "step": 0.01}],
     "try_next": [{"id": "...", "label": "...", "why": "...", "base": {...}, "factors": {...}}],
     "level_names": {"1": "random labels"}}  (optional: a level's name in the charts)

A knob is a factor path (:mod:`mtl_core.studies.factors`) set on the study's base config; a
"try next" variation merges its ``base`` into the study's base and replaces its ``factors``
where it gives them. Every lesson, every knob's ends and every variation must expand into a
study that validates, or the file is refused with the field named.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_core.config import WHOLE_DICTS, ExperimentConfig, merge
from mtl_core.errors import ConfigError
from mtl_core.lessons.effect import Effect
from mtl_core.studies.factors import factor_kind, set_level
from mtl_core.studies.spec import StudySpec, expand

LESSONS_DIR = Path(__file__).resolve().parents[2] / "assets" / "lessons"
LESSONS_ENV = "MTL_LESSONS_DIR"  # another folder of lessons (a course's own, or a test's)


def lessons_dir() -> Path:
    return Path(os.environ.get(LESSONS_ENV) or LESSONS_DIR)
CHART_KINDS = ("curves", "effect", "cosine", "weights", "losses", "tradeoff")
_KEYS = {"id", "order", "title", "text", "paper", "study", "charts", "effect", "knobs", "try_next", "summary",
         "level_names"}


@dataclass(frozen=True)
class Knob:
    path: str
    label: str
    lo: float
    hi: float
    step: float
    help: str = ""


@dataclass(frozen=True)
class Variation:
    id: str
    label: str
    why: str
    base: dict = field(default_factory=dict)
    factors: dict | None = None
    effect: Effect | None = None  # a variation may claim something else (or nothing: None keeps the lesson's)


@dataclass(frozen=True)
class Lesson:
    id: str
    order: int
    title: str
    summary: str
    text: str
    paper: dict
    study: dict  # the spec as a dict
    charts: tuple[dict, ...]
    effect: Effect
    knobs: tuple[Knob, ...] = ()
    try_next: tuple[Variation, ...] = ()
    level_names: dict = field(default_factory=dict)  # a level's values as shown ("1", "nash_mtl") -> its name in charts
    file: str = ""

    def spec(self, knobs: dict[str, float] | None = None, variation: str = "", seeds: int | None = None) -> StudySpec:
        """The study to run: the preset, a variation's changes, the knobs' values, and the seeds."""
        d = copy.deepcopy(self.study)
        var = self.variation(variation) if variation else None
        if var is not None:
            d["base"] = merge(d.get("base", {}), var.base)
            if var.factors is not None:
                d["factors"] = copy.deepcopy(var.factors)
        for path, value in (knobs or {}).items():
            knob = next((k for k in self.knobs if k.path == path), None)
            if knob is None:
                raise ConfigError(f"knob {path}", f"this lesson has no such control; its controls: "
                                  f"{', '.join(k.path for k in self.knobs) or 'none'}")
            if not knob.lo <= float(value) <= knob.hi:
                raise ConfigError(f"knob {path}", f"{value:g} is outside {knob.lo:g} to {knob.hi:g}")
            d["base"] = _set(d.get("base", {}), path, float(value))
        if seeds is not None:
            d["seeds"] = int(seeds)
        title = self.title + (f" · {var.label}" if var is not None else "")
        d["name"] = f"Lesson {self.order}: {title}"
        return StudySpec.from_dict(d)

    def variation(self, vid: str) -> Variation:
        for v in self.try_next:
            if v.id == vid:
                return v
        raise ConfigError("try", f"lesson {self.id!r} has no variation {vid!r}; it has: "
                          f"{', '.join(v.id for v in self.try_next) or 'none'}")

    def effect_of(self, variation: str = "") -> Effect:
        var = self.variation(variation) if variation else None
        return var.effect if var is not None and var.effect is not None else self.effect


def _set(base: dict, path: str, value: Any) -> dict:
    """``base`` (a partial config dict) with one factor path set, however little of it ``base`` holds."""
    full = merge(ExperimentConfig().to_dict(), base)
    set_level(full, path, factor_kind(path, ExperimentConfig.from_dict(full)), value, full)
    full = ExperimentConfig.from_dict(full).to_dict()  # as the config holds it: 16.0 -> 16 for a width
    out = copy.deepcopy(base)
    node, full_node = out, full
    *parents, last = path.split(".")
    for p in parents:  # copy just the branch the path runs down
        full_node = full_node[p]
        node = node.setdefault(p, {})
    if parents and parents[-1] in WHOLE_DICTS:
        node[last] = value
    else:
        node[last] = full_node[last]
    return out


def _text(d: dict, key: str, where: str, limit: int = 4000) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}.{key}", "missing or empty; expected text")
    if len(v) > limit:
        raise ConfigError(f"{where}.{key}", f"{len(v)} characters; at most {limit}")
    return v


def parse(d: Any, file: str = "") -> Lesson:
    """A lesson from its JSON object; a ConfigError naming the file and the field otherwise."""
    where = Path(file).name or "lesson"
    if not isinstance(d, dict):
        raise ConfigError(where, f"expected an object, got {type(d).__name__}")
    for k in d:
        if k not in _KEYS:
            raise ConfigError(f"{where}.{k}", f"unknown key; allowed keys: {', '.join(sorted(_KEYS))}")
    for k in ("id", "title", "text", "study", "effect", "charts"):
        if k not in d:
            raise ConfigError(f"{where}.{k}", "missing")
    paper = d.get("paper") or {}
    if not isinstance(paper, dict) or not isinstance(paper.get("title", ""), str) or not paper.get("title"):
        raise ConfigError(f"{where}.paper", 'expected {"title": "...", "url": "https://..."}: the paper to read')
    charts = d["charts"]
    if not isinstance(charts, list) or not charts:
        raise ConfigError(f"{where}.charts", f"expected a list of charts, each of kind {', '.join(CHART_KINDS)}")
    for i, c in enumerate(charts):
        if not isinstance(c, dict) or c.get("kind") not in CHART_KINDS:
            raise ConfigError(f"{where}.charts[{i}]", f"kind must be one of {', '.join(CHART_KINDS)}, got {c!r}"[:200])
    try:
        spec = StudySpec.from_dict(d["study"])
        expand(spec)
    except ConfigError as e:
        raise ConfigError(f"{where}.study.{e.field}", e.message) from None
    order = d.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        raise ConfigError(f"{where}.order", f"expected an integer, got {order!r}")
    knobs = []
    for i, k in enumerate(d.get("knobs", [])):
        w = f"{where}.knobs[{i}]"
        if not isinstance(k, dict) or not isinstance(k.get("path"), str):
            raise ConfigError(w, "expected {path, label, min, max, step}")
        try:
            knob = Knob(k["path"], _text(k, "label", w), float(k["min"]), float(k["max"]), float(k["step"]),
                        str(k.get("help", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(w, f"expected {{path, label, min, max, step}}: {e}") from None
        if not knob.lo < knob.hi or knob.step <= 0:
            raise ConfigError(w, f"needs min < max and step > 0, got {knob.lo:g}, {knob.hi:g}, {knob.step:g}")
        knobs.append(knob)
    tries = []
    for i, v in enumerate(d.get("try_next", [])):
        w = f"{where}.try_next[{i}]"
        if not isinstance(v, dict) or not isinstance(v.get("id"), str) or not v["id"]:
            raise ConfigError(w, "expected {id, label, why, base, factors}")
        if not isinstance(v.get("base", {}), dict) or not isinstance(v.get("factors", {}), dict):
            raise ConfigError(w, "base and factors are objects")
        eff = Effect.from_dict(v["effect"], f"{w}.effect") if v.get("effect") else None
        tries.append(Variation(v["id"], _text(v, "label", w, 120), _text(v, "why", w, 600),
                               copy.deepcopy(v.get("base", {})), copy.deepcopy(v.get("factors")), eff))
    names = d.get("level_names", {})
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise ConfigError(f"{where}.level_names", 'expected an object of "level as shown": "name in the charts"')
    if len({v.id for v in tries}) != len(tries):
        raise ConfigError(f"{where}.try_next", "two variations share an id")
    lesson = Lesson(id=_text(d, "id", where, 60), order=order, title=_text(d, "title", where, 120),
                    summary=str(d.get("summary", "")), text=_text(d, "text", where), paper=dict(paper),
                    study=copy.deepcopy(d["study"]), charts=tuple(charts),
                    effect=Effect.from_dict(d["effect"], f"{where}.effect"), knobs=tuple(knobs), try_next=tuple(tries),
                    level_names=dict(names), file=file)
    for knob in lesson.knobs:  # both ends of every control must make a study that validates
        for value in (knob.lo, knob.hi):
            try:
                expand(lesson.spec({knob.path: value}))
            except ConfigError as e:
                raise ConfigError(f"{where}.knobs.{knob.path}", f"{value:g} makes a study that is refused: {e}") from None
    for var in lesson.try_next:
        try:
            expand(lesson.spec(variation=var.id))
        except ConfigError as e:
            raise ConfigError(f"{where}.try_next.{var.id}", f"the variation makes a study that is refused: {e}") from None
    return lesson


def load(path: str | Path) -> Lesson:
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(p.name, f"cannot be read as JSON ({e})") from None
    return parse(d, str(p))


def lessons(folder: str | Path | None = None) -> tuple[list[Lesson], list[ConfigError]]:
    """Every lesson in the folder, in their order, and the problems of those refused (one bad file
    does not hide the others)."""
    out, problems = [], []
    for p in sorted(Path(folder or lessons_dir()).glob("*.json")):
        try:
            out.append(load(p))
        except ConfigError as e:
            problems.append(e)
    ids = [x.id for x in out]
    for x in out:
        if ids.count(x.id) > 1:
            problems.append(ConfigError(Path(x.file).name, f"lesson id {x.id!r} is used by another file too"))
    return sorted(out, key=lambda x: (x.order, x.id)), problems
