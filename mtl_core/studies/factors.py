"""A study's factors: which config fields may vary, their levels (lists, or log and linear ranges
for a numeric factor), how a level is applied to a config dict, and the checks that refuse a bad
factor or level, naming both, before anything runs (see :mod:`mtl_core.studies.spec`)."""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass
from typing import Any

from mtl_core.config import AugmentConfig, ExperimentConfig
from mtl_core.errors import ConfigError
from mtl_core.weighting import WEIGHTINGS

# the augmentation fields that switch a transform on (0 = off), as mtl_core.data.augment.is_identity reads them
TRANSFORMS = ("hflip", "vflip", "crop", "rotation", "color_jitter", "noise", "blur", "erasing")
NOT_FACTORS = {
    "seed": 'the seed is not a factor; use "seeds": N for seeds 1..N, or a list such as "seeds": [1, 2, 3]',
    "name": "the run name is not a factor; every planned run is named after the study, its levels and its seed",
    "baseline_of": 'is not a factor; use "baselines": true to add every task\'s single-task baseline',
}
MAX_RANGE_N = 1000
# per-task entries of the data section (see mtl_core.data.labels) -> the value a missing task has
TASK_ENTRIES = {"data.label_fraction": 1.0, "data.label_noise": 0.0, "data.loss_scale": 1.0}


def task_entry(path: str) -> tuple[str, str] | None:
    """``data.label_fraction.segmentation`` -> (``data.label_fraction``, ``segmentation``); else None."""
    parent, _, task = path.rpartition(".")
    return (parent, task) if parent in TASK_ENTRIES and task else None


@dataclass(frozen=True)
class Factor:
    path: str
    kind: str  # "field", "weight", "param", "entry" (a task's data.label_fraction ...), "tasks" or "augment"
    levels: tuple


def parse_factors(factors: dict, base: dict) -> list[Factor]:
    """A spec's ``factors`` (factor -> levels) checked and expanded, over the config dict ``base``."""
    if not isinstance(factors, dict):
        raise ConfigError("factors", f"expected an object of factor: levels, got {type(factors).__name__}")
    base_cfg = ExperimentConfig.from_dict(base)
    out = []
    for path, raw in factors.items():
        if not isinstance(path, str):
            raise ConfigError("factors", f"a factor is named by a string (a dotted path), got {path!r}")
        kind = factor_kind(path, base_cfg)
        out.append(Factor(path, kind, tuple(_levels(path, kind, raw, base))))
    by_path = {f.path: f for f in out}
    task_sets = [tuple(t) for t in by_path["tasks"].levels] if "tasks" in by_path else [base_cfg.tasks]
    methods = list(by_path["weighting.method"].levels) if "weighting.method" in by_path else [base_cfg.weighting.method]
    for f in out:
        where = f"factors.{f.path}"
        if f.kind in ("weight", "entry"):
            task = f.path.removeprefix("weighting.weights.") if f.kind == "weight" else f.path.rpartition(".")[2]
            missing = [list(s) for s in task_sets if task not in s]
            if missing and "tasks" in by_path:
                raise ConfigError(where, f"{task!r} is not in every level of the tasks factor (not in "
                                  f"{show(missing[0])}); weight only a task every level trains, or drop this factor")
            if missing:
                raise ConfigError(where, f"{task!r} is not a trained task; the study trains {', '.join(base_cfg.tasks)}; "
                                  f"add it to base.tasks or drop this factor")
        if f.kind == "param":
            _check_param(where, f.path.removeprefix("weighting.params."), methods)
        if f.kind == "field" and f.path.startswith("augment.") and "augment" in by_path:
            raise ConfigError(where, "cannot be varied together with the augment factor, which sets every transform; "
                              "drop one of the two")
    return out


def factor_kind(path: str, base_cfg: ExperimentConfig) -> str:
    """What a factor path is: \"field\", \"weight\", \"param\", \"tasks\" or \"augment\" (a ConfigError naming it otherwise)."""
    where = f"factors.{path}"
    if path in NOT_FACTORS:
        raise ConfigError(where, NOT_FACTORS[path])
    if path in ("tasks", "augment"):
        return path
    if path.startswith("weighting.weights.") and len(path) > len("weighting.weights."):
        return "weight"
    if path.startswith("weighting.params.") and len(path) > len("weighting.params."):
        return "param"
    if task_entry(path):
        return "entry"
    leaves = config_fields(ExperimentConfig)
    if path in TASK_ENTRIES:
        raise ConfigError(where, f"name one task's entry, e.g. {path}.segmentation")
    if path in ("weighting.weights", "weighting.params"):
        raise ConfigError(where, f"name one entry, e.g. {path}.{'segmentation' if path.endswith('weights') else 'c'}")
    sections = {p.split(".")[0] for p in leaves if "." in p}
    if path in sections:
        example = next(p for p in leaves if p.startswith(path + "."))
        raise ConfigError(where, f"{path} is a section of the config, not a field; name one of its fields, e.g. {example}")
    if leaves.get(path) in (int, float, str, bool):
        return "field"
    known = [p for p, tp in leaves.items() if tp in (int, float, str, bool) and p not in NOT_FACTORS]
    known += ["tasks", "augment", *(f"weighting.weights.{t}" for t in base_cfg.tasks),
              *(f"{e}.{t}" for e in TASK_ENTRIES for t in base_cfg.tasks)]
    hint = did_you_mean(path, known)
    raise ConfigError(where, f"{path} is not a config field" + (hint or "; vary a field by its dotted path (e.g. "
                      "model.width, optim.lr, weighting.method), a task's weight (weighting.weights.<task>), a "
                      "method's hyperparameter (weighting.params.<name>), augment or tasks"))


def _levels(path: str, kind: str, raw: Any, base: dict) -> list:
    where = f"factors.{path}"
    tp = config_fields(ExperimentConfig).get(path) if kind == "field" else float
    numeric = kind in ("weight", "param", "entry") or tp in (int, float)
    if isinstance(raw, dict):
        if not numeric:
            raise ConfigError(where, f"a range needs a numeric factor; {path} takes "
                              f"{'true/false' if tp is bool or kind == 'augment' else 'names'}: list its levels")
        values = _range(where, raw, tp is int)
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
    else:
        raise ConfigError(where, f'expected a list of levels or a range such as {{"log": [0.1, 10], "n": 5}}, got {raw!r}'[:300])
    if not values:
        raise ConfigError(where, "no levels; list at least one value")
    out, seen = [], {}
    for v in values:
        nv = _normalize(where, path, kind, v, base)
        # a task subset in any order is one level; an image size [height, width] is a list too
        same = tuple(sorted(nv)) if kind == "tasks" else tuple(nv) if isinstance(nv, list) else nv
        if same in seen:
            if isinstance(raw, dict):
                continue  # an integer range may round two values to one
            raise ConfigError(where, f"level {show(v)} is listed twice" if seen[same] == nv else
                              f"level {show(v)} is the same task subset as {show(seen[same])}; list it once")
        seen[same] = nv
        out.append(nv)
    return out


def _range(where: str, raw: dict, integer: bool) -> list:
    form = '{"log": [lo, hi], "n": k} or {"linear": [lo, hi], "n": k}'
    kinds = [k for k in ("log", "linear") if k in raw]
    if len(kinds) != 1 or set(raw) != {kinds[0], "n"}:
        raise ConfigError(where, f"a range is {form}, got {show(raw)}")
    scale, ends, n = kinds[0], raw[kinds[0]], raw["n"]
    if not (isinstance(ends, list) and len(ends) == 2 and all(is_number(x) and math.isfinite(x) for x in ends)):
        raise ConfigError(where, f"range {show(raw)}: {scale} needs two numbers [lo, hi], got {show(ends)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_RANGE_N:
        raise ConfigError(where, f"range {show(raw)}: n must be an integer from 2 to {MAX_RANGE_N}, got {show(n)}")
    lo, hi = ends
    if not lo < hi:
        raise ConfigError(where, f"range {show(raw)}: needs lo < hi, got [{lo:g}, {hi:g}]")
    if scale == "log" and lo <= 0:
        raise ConfigError(where, f"range {show(raw)}: a log range needs lo > 0, got {lo:g}; start above 0 or use linear")
    if scale == "log":
        values = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
    else:
        values = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    values[0], values[-1] = lo, hi
    return [round(v) for v in values] if integer else [float(f"{v:.12g}") for v in values]


def _normalize(where: str, path: str, kind: str, v: Any, base: dict) -> Any:
    """A level as the config holds it (1 -> 1.0 for a float field), or a ConfigError naming it."""
    if kind == "augment":
        if not isinstance(v, bool):
            raise ConfigError(where, f"level {show(v)} is refused: augment takes true (on) or false (every transform off)")
        return v
    if kind in ("weight", "param", "entry"):
        if not is_number(v) or not math.isfinite(v):
            raise ConfigError(where, f"level {show(v)} is refused: {path}: expected a number")
        return float(v)
    d = copy.deepcopy(base)
    set_level(d, path, kind, v, base)
    try:
        cfg = ExperimentConfig.from_dict(d).to_dict()
    except ConfigError as e:
        raise ConfigError(where, f"level {show(v)} is refused: {e}") from None
    return get_level(cfg, path, kind)


def _check_param(where: str, name: str, methods: list) -> None:
    params = {m: list(WEIGHTINGS.get(m).defaults) for m in methods if isinstance(m, str) and m in WEIGHTINGS}
    if params and not any(name in p for p in params.values()):
        have = "; ".join(f"{m}: {', '.join(p) or 'none'}" for m, p in params.items())
        hint = did_you_mean(name, sorted({x for p in params.values() for x in p}))
        raise ConfigError(where, f"{name!r} is not a hyperparameter of {', '.join(params)}; theirs: {have}{hint}")


def set_level(d: dict, path: str, kind: str, value: Any, base: dict) -> None:
    """Apply one factor's level to a config dict (in place)."""
    if kind == "weight":
        d["weighting"]["weights"][path.removeprefix("weighting.weights.")] = value
    elif kind == "param":
        d["weighting"]["params"][path.removeprefix("weighting.params.")] = value
    elif kind == "entry":
        section, name = path.split(".")[:2]
        d[section][name][path.rpartition(".")[2]] = value
    elif kind == "tasks":
        d["tasks"] = value
        if isinstance(value, list):  # a base weight or data entry of a task this subset does not train is dropped
            d["weighting"]["weights"] = {t: w for t, w in d["weighting"]["weights"].items() if t in value}
            for e in TASK_ENTRIES:
                section, name = e.split(".")
                d[section][name] = {t: x for t, x in d[section][name].items() if t in value}
    elif kind == "augment":
        aug = dict(base["augment"])
        if not value:
            aug.update({n: 0.0 for n in TRANSFORMS})
        elif all(aug[n] == 0 for n in TRANSFORMS):
            aug = dataclasses.asdict(AugmentConfig())
        d["augment"] = aug
    else:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value


def get_level(d: dict, path: str, kind: str) -> Any:
    if kind == "augment":
        return any(d["augment"][n] != 0 for n in TRANSFORMS)
    if kind == "weight":
        return d["weighting"]["weights"].get(path.removeprefix("weighting.weights."), 1.0)
    if kind == "param":
        return d["weighting"]["params"].get(path.removeprefix("weighting.params."))
    if kind == "entry":
        parent, task = task_entry(path)
        section, name = parent.split(".")
        return d[section][name].get(task, TASK_ENTRIES[parent])
    for p in path.split("."):
        d = d[p]
    return list(d) if kind == "tasks" else d


def config_fields(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every field of a config dataclass by dotted path -> its type."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if tp == (int | tuple[int, int]):  # data.image_size: a study varies it as a square's side
            tp = int
        if dataclasses.is_dataclass(tp):
            out.update(config_fields(tp, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = tp
    return out


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def did_you_mean(word: str, choices: list[str]) -> str:
    """'; did you mean model.width?', or '' when nothing is close."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def show(v: Any) -> str:
    """A level as a person wrote it, for messages: 'pcgrad', 0.3, true, ['classification', 'depth']."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return json.dumps(v, default=str)[:200]
    return repr(v)[:200]
