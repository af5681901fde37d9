"""The Setup form's state: one ``st.session_state`` key per config field, and the config built
from them with ``dataclasses.replace``.

Keys are ``cfg.<dotted field>`` (``cfg.optim.lr``, ``cfg.tasks``), plus
``cfg.weighting.weights.<task>`` for every registered task, ``cfg.weighting.params.<method>.<name>``
for every method's hyperparameters (so switching methods keeps what was typed) and
``cfg.augment_on.<transform>`` for the augmentation checklist. Widgets are created with these
keys, no default of their own and ``persist_state="session"``, so the session state is the one
source of truth: a rerun, a page switch, an uploaded config or an example loaded from
``assets/configs/`` all read and fill the same keys. Works on any mutable mapping, so it is
testable without Streamlit.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from mtl_core.config import ExperimentConfig, changes, merge
from mtl_core.errors import ConfigError
from mtl_core.protocols.benchmarks import presets
from mtl_core.studies.spec import StudySpec
from mtl_core.tasks import TASKS
from mtl_core.training.validation import checked_link
from mtl_core.weighting import WEIGHTINGS

PREFIX = "cfg."
BASE_KEY = "setup.base"  # the config the form started from: defaults, or the last uploaded file
AUGMENTS = {  # Setup's augmentation sliders, field: (label, what the slider sets, lo, hi, step)
    "hflip": ("Horizontal flip", "probability", 0.0, 1.0, 0.05),
    "vflip": ("Vertical flip", "probability", 0.0, 1.0, 0.05),
    "crop": ("Random resized crop", "probability", 0.0, 1.0, 0.05),
    "rotation": ("Rotation", "up to ± degrees", 0.0, 180.0, 1.0),
    "color_jitter": ("Colour jitter", "strength", 0.0, 1.0, 0.05),
    "blur": ("Gaussian blur", "probability", 0.0, 1.0, 0.05),
    "noise": ("Gaussian noise", "standard deviation", 0.0, 1.0, 0.01),
    "erasing": ("Random erasing", "probability", 0.0, 1.0, 0.05),
}
SECTIONS = ("data", "model", "optim")  # sections edited field by field
# augmentation checklist: transform -> the strength it gets when switched on from 0
AUGMENT_ON = {"hflip": 0.5, "vflip": 0.5, "crop": 0.5, "rotation": 15.0, "color_jitter": 0.4,
              "blur": 0.3, "noise": 0.05, "erasing": 0.25}
AUGMENT_EXTRA = ("crop_scale_min", "blur_sigma")  # parameters of a transform, never "off"
_SCALAR = (int, float, str, bool)
# per-task data entries (mtl_core.data.labels): key cfg.data.<name>.<task> -> the value a task without one has
TASK_DATA = {"label_fraction": 1.0, "label_noise": 0.0, "loss_scale": 1.0}
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "configs"  # the example experiments
QUICK_SPEC = Path(__file__).resolve().parents[1] / "assets" / "studies" / "quick_methods.json"
STUDY = "study."  # the "Start as a study" section's keys: study.methods, study.seeds ...
STUDY_DEFAULTS: dict[str, Any] = {"methods": [], "sweep": False, "sweep_task": None, "sweep_lo": 0.1, "sweep_hi": 10.0,
                                  "sweep_n": 3, "archs": [], "seeds": 3, "baselines": True, "quick": False, "name": ""}


def _scalar_fields(cls: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if hints[f.name] in _SCALAR]


def scalar_paths() -> dict[str, type]:
    """Every scalar field a widget edits, ``{dotted path: type}``."""
    out = {name: tp for name, tp in _scalar_fields(ExperimentConfig)}
    for sec in SECTIONS:
        cls = type(getattr(ExperimentConfig(), sec))
        out.update({f"{sec}.{name}": tp for name, tp in _scalar_fields(cls)})
    out.update({f"augment.{name}": float for name in (*AUGMENT_ON, *AUGMENT_EXTRA)})
    out["weighting.method"] = str
    out["weighting.rep_grad"] = bool
    return out


def _coerce(tp: type, v: Any) -> Any:
    # number widgets refuse an int where they hold a float (and the reverse)
    return tp(v) if tp in (int, float) and not isinstance(v, bool) else v


def _registered() -> tuple[list[str], dict[str, dict[str, float]]]:
    methods = {m: dict(WEIGHTINGS.get(m).defaults) for m in WEIGHTINGS.available()}
    return TASKS.available(), methods


def load(ss: MutableMapping[str, Any], cfg: ExperimentConfig) -> None:
    """Fill every key from ``cfg`` (overwriting): after an upload, or a reset."""
    ss[BASE_KEY] = cfg
    for path, tp in scalar_paths().items():
        obj: Any = cfg
        for part in path.split("."):
            obj = getattr(obj, part)
        ss[PREFIX + path] = _coerce(tp, obj)
    for name, strength in AUGMENT_ON.items():
        value = float(getattr(cfg.augment, name))
        ss[f"{PREFIX}augment_on.{name}"] = value != 0
        ss[f"{PREFIX}augment.{name}"] = value if value != 0 else strength
    ss[PREFIX + "tasks"] = list(cfg.tasks)
    ss[PREFIX + "data.height"], ss[PREFIX + "data.width"] = cfg.data.hw
    tasks, methods = _registered()
    for t in dict.fromkeys([*tasks, *cfg.tasks]):
        ss[f"{PREFIX}weighting.weights.{t}"] = cfg.task_weight(t)
        for name, default in TASK_DATA.items():
            ss[f"{PREFIX}data.{name}.{t}"] = float(getattr(cfg.data, name).get(t, default))
    for m, defaults in methods.items():
        given = cfg.weighting.params if m == cfg.weighting.method else {}
        for p, v in defaults.items():
            ss[f"{PREFIX}weighting.params.{m}.{p}"] = float(given.get(p, v))


def ensure(ss: MutableMapping[str, Any]) -> None:
    """Defaults for keys not set yet (the first visit, or a task/method registered since)."""
    if BASE_KEY not in ss:
        load(ss, ExperimentConfig())
        return
    tasks, methods = _registered()
    for t in dict.fromkeys([*tasks, *(ss.get(PREFIX + "tasks") or ())]):  # a label table's columns too
        ss.setdefault(f"{PREFIX}weighting.weights.{t}", 1.0)
        for name, default in TASK_DATA.items():
            ss.setdefault(f"{PREFIX}data.{name}.{t}", default)
    for m, defaults in methods.items():
        for p, v in defaults.items():
            ss.setdefault(f"{PREFIX}weighting.params.{m}.{p}", float(v))


def method_class(name: str) -> type | None:
    return WEIGHTINGS.get(name) if name in WEIGHTINGS else None


def offers_rep_grad(cls: type | None) -> bool:
    """Whether the form shows the rep_grad toggle for a weighting method."""
    return cls is not None and getattr(cls, "kind", "loss") == "gradient" and bool(getattr(cls, "supports_rep", False))


def apply_table_edits(ss: MutableMapping[str, Any], state: dict[str, Any], tasks: list[str],
                      columns: dict[str, str]) -> None:
    """Copy a per-task table editor's edits (Streamlit's ``{"edited_rows": {row: {column: value}}}``,
    one row per task in ``tasks`` order) into each task's own key: ``columns`` maps a column to
    the field it edits (``"weight"`` -> ``"weighting.weights"``), the key being ``cfg.<field>.<task>``.
    A cleared cell keeps the value it had."""
    for row, edit in (state.get("edited_rows") or {}).items():
        if not 0 <= int(row) < len(tasks):
            continue
        for column, value in edit.items():
            if column in columns and value is not None:
                ss[f"{PREFIX}{columns[column]}.{tasks[int(row)]}"] = float(value)


def build(ss: MutableMapping[str, Any]) -> ExperimentConfig:
    """The config the form shows, from the base config with ``dataclasses.replace``."""
    base: ExperimentConfig = ss[BASE_KEY]

    def v(path: str, default: Any = None) -> Any:
        return ss.get(PREFIX + path, default)

    sections = {sec: dataclasses.replace(getattr(base, sec), **{name: v(f"{sec}.{name}")
                for name, _ in _scalar_fields(type(getattr(base, sec)))}) for sec in SECTIONS}
    augment = dataclasses.replace(
        base.augment,
        **{n: float(v(f"augment.{n}")) if v(f"augment_on.{n}") else 0.0 for n in AUGMENT_ON},
        **{n: float(v(f"augment.{n}")) for n in AUGMENT_EXTRA},
    )
    tasks = tuple(v("tasks") or ())
    method = v("weighting.method")
    cls = method_class(method)
    params = {p: float(v(f"weighting.params.{method}.{p}", d)) for p, d in (cls.defaults if cls else {}).items()}
    weighting = dataclasses.replace(
        base.weighting, method=method, params=params,
        weights={t: float(v(f"weighting.weights.{t}", 1.0)) for t in tasks},
        rep_grad=bool(v("weighting.rep_grad")) if offers_rep_grad(cls) else False,
    )
    per_task = {name: {t: float(v(f"data.{name}.{t}", d)) for t in tasks if float(v(f"data.{name}.{t}", d)) != d}
                for name, d in TASK_DATA.items()}
    h = int(v("data.height", base.data.hw[0]))
    w = h if v("data.dataset") == "scenes" else int(v("data.width", h))  # Setup draws the scenes square
    sections["data"] = dataclasses.replace(sections["data"], **per_task, image_size=h if h == w else (h, w))
    top = {name: v(name) for name, _ in _scalar_fields(ExperimentConfig)}
    return dataclasses.replace(base, tasks=tasks, weighting=weighting, augment=augment, **sections, **top)


def parse_upload(data: bytes) -> ExperimentConfig:
    """An uploaded config file -> a config; raises ConfigError naming the field. A hyperparameter
    the method does not have is refused here: the form has no widget to show or clear it."""
    cfg = ExperimentConfig.from_json(data)
    cls = method_class(cfg.weighting.method)
    if cls is not None:
        unknown = sorted(set(cfg.weighting.params) - set(cls.defaults))
        if unknown:
            raise ConfigError(f"weighting.params.{unknown[0]}", f"{cfg.weighting.method} has no such parameter; "
                              f"its parameters: {', '.join(cls.defaults) or 'none'}")
    return cfg


@dataclasses.dataclass(frozen=True)
class Example:
    """One example config file: its name, a line saying what it sets up, and the config (``None``
    with ``error`` saying why when the file does not load)."""

    file: str  # the file's name in the examples folder
    name: str
    description: str
    config: ExperimentConfig | None = None
    error: str | None = None


def describe(cfg: ExperimentConfig) -> str:
    """A config in one line: ``classification, segmentation · mtan · static · 64 px · 1,000 steps``."""
    w = cfg.weighting
    weights = [f"{t} {cfg.task_weight(t):g}" for t in cfg.tasks if cfg.task_weight(t) != 1.0]
    method = w.method + (" on the shared representation" if w.rep_grad else "")
    return " · ".join([", ".join(cfg.tasks) or "no tasks", cfg.model.architecture,
                       method + (f" ({', '.join(weights)})" if weights else ""),
                       "x".join(dict.fromkeys(map(str, cfg.data.hw))) + " px" + ("" if cfg.data.dataset == "scenes" else f" {cfg.data.dataset}"),
                       f"{cfg.optim.steps:,} steps"])


def examples(folder: Path = EXAMPLES_DIR) -> list[Example]:
    """Every ``*.json`` in ``folder``, by file name, loaded as an upload is (:func:`parse_upload`)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        stem = path.stem.replace("_", " ")
        try:
            cfg = parse_upload(path.read_bytes())
        except (ConfigError, OSError) as e:
            out.append(Example(path.name, stem, "", error=str(e)))
            continue
        out.append(Example(path.name, cfg.name or stem, describe(cfg), cfg))
    if folder == EXAMPLES_DIR:  # the papers' protocols too (assets/benchmarks), with their published numbers
        for preset in presets().values():
            cfg = preset.experiment()
            out.append(Example(f"benchmarks/{preset.name}.json", preset.title,
                               describe(cfg) + "; set the data folder to your copy", cfg))
    return out


# ------------------------------------------------------------------ "Start as a study"
def quick_base(path: Path = QUICK_SPEC) -> dict[str, Any]:
    """The quick preset's settings (``base`` of ``assets/studies/quick_methods.json``: 32 px,
    600 steps ...) without its tasks: the quick switch makes a study fast, it keeps the tasks."""
    base = json.loads(path.read_text())["base"]
    return {k: v for k, v in base.items() if k != "tasks"}


def study_choices(ss: MutableMapping[str, Any]) -> dict[str, Any]:
    """The section's values (``study.<name>`` keys), defaults where unset."""
    return {k: ss.get(STUDY + k, v) for k, v in STUDY_DEFAULTS.items()}


def study_spec(cfg: ExperimentConfig, choices: dict[str, Any], quick: dict[str, Any] | None = None) -> Any:
    """The study the section describes, on the form's config as its base: a
    :class:`mtl_core.studies.spec.StudySpec` (raises ConfigError naming the field)."""
    base = cfg.to_dict()
    base.pop("baseline_of", None)
    factors: dict[str, Any] = {}
    if choices["methods"]:
        factors["weighting.method"] = list(choices["methods"])
        base["weighting"]["params"] = {}  # the form's hyperparameters are its method's: each method its defaults
    if choices["sweep"] and choices["sweep_task"]:
        factors[f"weighting.weights.{choices['sweep_task']}"] = {
            "log": [float(choices["sweep_lo"]), float(choices["sweep_hi"])], "n": int(choices["sweep_n"])}
    if choices["archs"]:
        factors["model.architecture"] = list(choices["archs"])
    if choices["quick"]:
        base = merge(base, quick if quick is not None else quick_base())
    name = (choices["name"] or "").strip() or cfg.name or "study from Setup"
    return StudySpec.from_dict({"name": name, "base": base, "factors": factors, "seeds": int(choices["seeds"]),
                                "baselines": bool(choices["baselines"])})


FACTOR_WORDS = {"weighting.method": ("method", "methods"), "model.architecture": ("architecture", "architectures")}


def study_size(spec: Any, planned: list[Any]) -> str:
    """``3 methods x 3 seeds + 6 baselines = 15 runs`` for a spec and its expansion."""
    seeds = len(spec.seed_list())
    trials = sum(1 for p in planned if p.role == "trial")
    baselines = len(planned) - trials
    parts = []
    for path, levels in spec.factors.items():
        n = len(levels) if isinstance(levels, list) else int(levels.get("n", 0))
        one, many = FACTOR_WORDS.get(path, (f"{path.rsplit('.', 1)[-1]} weight", f"{path.rsplit('.', 1)[-1]} weights")
                                     if path.startswith("weighting.weights.") else (path, path))
        parts.append(f"{n} {one if n == 1 else many}")
    if not parts:
        parts = ["1 config"]
    text = " x ".join([*parts, f"{seeds} seed{'s' if seeds != 1 else ''}"])
    if baselines:
        text += f" + {baselines} baseline{'s' if baselines != 1 else ''}"
    return f"{text} = {len(planned)} run{'s' if len(planned) != 1 else ''}"


__all__ = ["AUGMENT_ON", "BASE_KEY", "EXAMPLES_DIR", "PREFIX", "Example", "build", "describe", "ensure", "examples",
           "load", "method_class", "offers_rep_grad", "parse_upload", "quick_base", "scalar_paths", "study_choices",
           "study_size", "study_spec"]


WRITTEN_LINKS = "setup.links_written"  # the URL tokens this session's form wrote, newest last
MAX_WRITTEN = 64


def wrote_link(ss: MutableMapping[str, Any], token: str) -> None:
    """Remember a token the form wrote to the URL. The browser sends its URL with every rerun; a
    rerun asked for before it took the newest token carries an older one of the form's own, which
    must not be loaded as a shared link (it would undo the settings changed since)."""
    written = [t for t in ss.get(WRITTEN_LINKS, []) if t != token][-(MAX_WRITTEN - 1):]
    ss[WRITTEN_LINKS] = [*written, token]
    ss["setup.link"] = token


def load_link(ss: MutableMapping[str, Any], token: str | None) -> None:
    """``?config=<token>`` fills the form once per link (a shared setup); a link that does not
    parse or validate is refused with its reason (``setup.link_note``) and the form shows the
    default setup. Remembers which sections the linked setup changes (:func:`link_sections`)."""
    if not token or token == ss.get("setup.link") or token in ss.get(WRITTEN_LINKS, ()):
        return  # a link this session wrote itself: a rerun sent before the browser took the newer one
    ss["setup.link"] = token
    try:
        linked = checked_link(token)
    except ConfigError as e:
        load(ss, ExperimentConfig())
        ss["setup.link_note"] = ("error", f"The setup in this link was refused ({e}); the form shows the default setup.")
        ss["setup.link_sections"] = None
        return
    load(ss, linked)
    ss["setup.link_note"] = ("ok", "Loaded the setup from the link: the settings below hold its values.")
    ss["setup.link_sections"] = set(changes(linked.to_dict(), ExperimentConfig().to_dict()))


def link_sections(ss: MutableMapping[str, Any], sections: tuple[str, ...]) -> set[str]:
    """For a class (``instructor=1``): the form's sections the linked setup changes from the
    defaults, with the tasks and the start; every section when no link was loaded."""
    changed = ss.get("setup.link_sections")
    if not changed:
        return set(sections)
    return {s for s in sections if s in changed} | {"tasks", "start"}
