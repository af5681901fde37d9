"""A study's spec and its expansion into planned runs.

A spec is data with a JSON round trip, like an experiment config: ``base`` (a partial config
merged over the defaults, as ``--config`` is), ``factors`` (what to vary -> its levels), seeds, and
whether to add every task's single-task baseline. :func:`expand` turns it into the runs to train:
the full grid (or a random subset of it) x the seeds, then the baselines, every config validated
first, so a bad factor or level is refused, naming both, before anything runs.

A factor is a config field by its dotted path (``weighting.method``, ``model.width``,
``optim.lr`` ...), a task's weight (``weighting.weights.<task>``), a method's hyperparameter
(``weighting.params.<name>``), ``augment`` (true: the base's augmentation, or the defaults when
the base has none; false: every transform off) or ``tasks`` (lists of task names). Its levels are
a list, or for a numeric factor a range: ``{"log": [lo, hi], "n": k}`` (k log-spaced values, both
ends included, so a weight sweep draws a trade-off curve) or ``{"linear": [lo, hi], "n": k}``.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import random
import typing
from dataclasses import dataclass, field
from typing import Any

from mtl_core.config import AugmentConfig, ExperimentConfig
from mtl_core.errors import ConfigError

# the augmentation fields that switch a transform on (0 = off), as mtl_core.data.augment.is_identity reads them
TRANSFORMS = ("hflip", "vflip", "crop", "rotation", "color_jitter", "noise", "blur", "erasing")
NOT_FACTORS = {
    "seed": 'the seed is not a factor; use "seeds": N for seeds 1..N, or a list such as "seeds": [1, 2, 3]',
    "name": "the run name is not a factor; every planned run is named after the study, its levels and its seed",
    "baseline_of": 'is not a factor; use "baselines": true to add every task\'s single-task baseline',
}
MAX_RANGE_N = 1000
_ENUMERATE_LIMIT = 50  # a grid over this many times max_runs is refused without counting its baselines


@dataclass(frozen=True)
class StudySpec:
    """A base config, factors to vary and seeds: many runs as one experiment."""

    name: str = ""
    base: dict = field(default_factory=dict)  # a partial ExperimentConfig dict, merged over the defaults
    factors: dict = field(default_factory=dict)  # factor -> levels, in the order given
    seeds: int | tuple[int, ...] = 3  # N -> seeds 1..N; or explicit seeds
    baselines: bool = False  # add every task's single-task baseline, per seed
    sample: int = 0  # 0: the full grid; k: a random subset of k grid points
    sample_seed: int = 0
    max_runs: int = 200  # a larger study is refused

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if not isinstance(self.seeds, int):
            d["seeds"] = list(self.seeds)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Any) -> StudySpec:
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(d, dict):
            raise ConfigError("study", f"expected an object with keys {', '.join(names)}, got {type(d).__name__}")
        for k in d:
            if k not in names:
                raise ConfigError(str(k), f"unknown key; allowed keys: {', '.join(names)}{_did_you_mean(str(k), names)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "name" and not isinstance(v, str):
                raise ConfigError(k, f"expected a string, got {v!r}"[:200])
            if k == "baselines" and not isinstance(v, bool):
                raise ConfigError(k, f"expected true or false, got {v!r}"[:200])
            if k in ("base", "factors") and not isinstance(v, dict):
                raise ConfigError(k, f"expected an object, got {type(v).__name__}")
            if k in ("sample", "sample_seed", "max_runs"):
                v = _integer(v, k)
            if k == "seeds":
                v = _integer(v, k) if not isinstance(v, (list, tuple)) else tuple(_integer(x, k) for x in v)
            kw[k] = copy.deepcopy(v)
        for k, levels in kw.get("factors", {}).items():
            if not isinstance(levels, (list, dict)):
                raise ConfigError(f"factors.{k}", f"expected a list of levels or a range object such as "
                                  f'{{"log": [0.1, 10], "n": 5}}, got {levels!r}'[:300])
        spec = cls(**kw)
        spec.base_config()
        spec.seed_list()
        return spec

    @classmethod
    def from_json(cls, text: str | bytes) -> StudySpec:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ConfigError("study", f"not valid JSON ({e}); write a spec like the README's example") from None
        return cls.from_dict(d)

    def base_config(self) -> ExperimentConfig:
        """``base`` merged over the defaults (nested objects key by key); a problem names ``base.<field>``."""
        if not isinstance(self.base, dict):
            raise ConfigError("base", f"expected an object (a partial config), got {type(self.base).__name__}")
        try:
            return ExperimentConfig.from_dict(_merge(ExperimentConfig().to_dict(), self.base))
        except ConfigError as e:
            raise ConfigError(f"base.{e.field}", e.message) from None

    def seed_list(self) -> list[int]:
        s = self.seeds
        if isinstance(s, int) and not isinstance(s, bool):
            if not 1 <= s <= max(1, self.max_runs):
                raise ConfigError("seeds", f"{s} seeds: give between 1 and {max(1, self.max_runs)} (N runs seeds 1..N)")
            return list(range(1, s + 1))
        if not isinstance(s, (list, tuple)) or not s:
            raise ConfigError("seeds", f"expected a number of seeds N (seeds 1..N) or a list of seeds, got {s!r}"[:200])
        for x in s:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= 2**31 - 1:
                raise ConfigError("seeds", f"seed {x!r} is not an integer in [0, 2147483647]")
        if len(set(s)) != len(s):
            raise ConfigError("seeds", f"a seed is listed twice in {list(s)}")
        return list(s)


@dataclass(frozen=True)
class Planned:
    """One run of a study: its config, ready to train, and where it sits in the study."""

    key: str  # plan_key(config): the same config always gives the same key
    config: ExperimentConfig
    level: dict  # factor -> value for a trial; {} for a baseline
    seed: int
    role: str  # "trial" or "baseline"
    task: str = ""  # a baseline's task

    @property
    def label(self) -> str:
        if self.role == "baseline":
            return f"baseline: {self.task}"
        return _level_label(self.level) or "base config"


def plan_key(config: ExperimentConfig) -> str:
    """sha1 of the config's canonical JSON with ``name`` and ``baseline_of`` blanked (numbers as their
    field's type holds them, so a weight of 1 and one of 1.0 give the same key)."""
    d = dataclasses.replace(config, name="", baseline_of="").to_dict()
    try:
        d = ExperimentConfig.from_dict(d).to_dict()
    except ConfigError:
        pass  # a config built by hand with values of the wrong type: keyed as it is
    return hashlib.sha1(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class _Factor:
    path: str
    kind: str  # "field", "weight", "param", "tasks" or "augment"
    levels: tuple


def factor_levels(spec: StudySpec) -> dict[str, list]:
    """Every factor's levels, ranges expanded, values as the config holds them."""
    return {f.path: copy.deepcopy(list(f.levels)) for f in _factors(spec, _base_dict(spec))}


def expand(spec: StudySpec) -> list[Planned]:
    """The study's runs: trials (grid x seeds, in grid order then seed), then the baselines
    (each distinct one x seeds). Raises a ConfigError naming the factor and the level, or the
    study's size, before anything runs."""
    if isinstance(spec.sample, bool) or not isinstance(spec.sample, int) or spec.sample < 0:
        raise ConfigError("sample", f"expected 0 (the full grid) or a number of grid points, got {spec.sample!r}")
    if isinstance(spec.max_runs, bool) or not isinstance(spec.max_runs, int) or spec.max_runs < 1:
        raise ConfigError("max_runs", f"expected a positive integer, got {spec.max_runs!r}")
    seeds = spec.seed_list()
    base = _base_dict(spec)
    factors = _factors(spec, base)
    sizes = [len(f.levels) for f in factors]
    total = math.prod(sizes)
    limit = spec.max_runs
    if spec.sample > total:
        raise ConfigError("sample", f"sample={spec.sample} is more than the grid's {_plural(total, 'point')}; "
                          f"use at most {total}, or 0 for the full grid")
    n_points = spec.sample or total
    if n_points * len(seeds) > limit and n_points > _ENUMERATE_LIMIT * limit:
        n_base = None if spec.baselines else 0
        raise ConfigError("max_runs", _size_message(sizes, total, n_points, len(seeds), n_base, limit, bool(spec.sample)))
    if spec.sample:
        indices = sorted(random.Random(spec.sample_seed).sample(range(total), spec.sample))
    else:
        indices = range(total)
    title = spec.name or base.get("name") or "study"
    points = [_point(i, sizes) for i in indices]
    configs = [_build(base, factors, p, seeds[0]) for p in points]

    distinct: dict[str, ExperimentConfig] = {}  # seed-blind key -> baseline config
    if spec.baselines:
        for cfg in configs:
            for b in cfg.single_task_baselines(""):
                distinct.setdefault(plan_key(dataclasses.replace(b, seed=0)), b)
    runs = (len(points) + len(distinct)) * len(seeds)
    if runs > limit:
        raise ConfigError("max_runs", _size_message(sizes, total, n_points, len(seeds), len(distinct) * len(seeds),
                                                    limit, bool(spec.sample)))
    _check_points(base, factors, points, configs, seeds[0])

    out = []
    for p, cfg in zip(points, configs):
        level = {f.path: copy.deepcopy(f.levels[j]) for f, j in zip(factors, p)}
        for s in seeds:
            c = dataclasses.replace(cfg, seed=s, name=_name(title, _level_label(level), f"seed {s}"))
            out.append(Planned(plan_key(c), c, level, s, "trial"))
    from mtl_core.validation import check

    for b, extra in zip(distinct.values(), _baseline_names(list(distinct.values()), factors)):
        task = b.tasks[0]
        try:
            check(b)
        except ConfigError as e:
            raise ConfigError("baselines", f"the single-task baseline of {task} is refused: {e}; "
                              "turn baselines off or change the base") from None
        for s in seeds:
            c = dataclasses.replace(b, seed=s, baseline_of="", name=_name(title, f"{task} alone", extra, f"seed {s}"))
            out.append(Planned(plan_key(c), c, {}, s, "baseline", task))
    return out


# --- factors and their levels ---

def _factors(spec: StudySpec, base: dict) -> list[_Factor]:
    if not isinstance(spec.factors, dict):
        raise ConfigError("factors", f"expected an object of factor: levels, got {type(spec.factors).__name__}")
    base_cfg = ExperimentConfig.from_dict(base)
    out = []
    for path, raw in spec.factors.items():
        if not isinstance(path, str):
            raise ConfigError("factors", f"a factor is named by a string (a dotted path), got {path!r}")
        kind = _kind(path, base_cfg)
        out.append(_Factor(path, kind, tuple(_levels(path, kind, raw, base))))
    by_path = {f.path: f for f in out}
    task_sets = [tuple(t) for t in by_path["tasks"].levels] if "tasks" in by_path else [base_cfg.tasks]
    methods = list(by_path["weighting.method"].levels) if "weighting.method" in by_path else [base_cfg.weighting.method]
    for f in out:
        where = f"factors.{f.path}"
        if f.kind == "weight":
            task = f.path.removeprefix("weighting.weights.")
            missing = [list(s) for s in task_sets if task not in s]
            if missing and "tasks" in by_path:
                raise ConfigError(where, f"{task!r} is not in every level of the tasks factor (not in "
                                  f"{_show(missing[0])}); weight only a task every level trains, or drop this factor")
            if missing:
                raise ConfigError(where, f"{task!r} is not a trained task; the study trains {', '.join(base_cfg.tasks)}; "
                                  f"add it to base.tasks or drop this factor")
        if f.kind == "param":
            _check_param(where, f.path.removeprefix("weighting.params."), methods)
        if f.kind == "field" and f.path.startswith("augment.") and "augment" in by_path:
            raise ConfigError(where, "cannot be varied together with the augment factor, which sets every transform; "
                              "drop one of the two")
    return out


def _kind(path: str, base_cfg: ExperimentConfig) -> str:
    where = f"factors.{path}"
    if path in NOT_FACTORS:
        raise ConfigError(where, NOT_FACTORS[path])
    if path in ("tasks", "augment"):
        return path
    if path.startswith("weighting.weights.") and len(path) > len("weighting.weights."):
        return "weight"
    if path.startswith("weighting.params.") and len(path) > len("weighting.params."):
        return "param"
    leaves = _leaves(ExperimentConfig)
    if path in ("weighting.weights", "weighting.params"):
        raise ConfigError(where, f"name one entry, e.g. {path}.{'segmentation' if path.endswith('weights') else 'c'}")
    sections = {p.split(".")[0] for p in leaves if "." in p}
    if path in sections:
        example = next(p for p in leaves if p.startswith(path + "."))
        raise ConfigError(where, f"{path} is a section of the config, not a field; name one of its fields, e.g. {example}")
    if leaves.get(path) in (int, float, str, bool):
        return "field"
    known = [p for p, tp in leaves.items() if tp in (int, float, str, bool) and p not in NOT_FACTORS]
    known += ["tasks", "augment", *(f"weighting.weights.{t}" for t in base_cfg.tasks)]
    hint = _did_you_mean(path, known)
    raise ConfigError(where, f"{path} is not a config field" + (hint or "; vary a field by its dotted path (e.g. "
                      "model.width, optim.lr, weighting.method), a task's weight (weighting.weights.<task>), a "
                      "method's hyperparameter (weighting.params.<name>), augment or tasks"))


def _levels(path: str, kind: str, raw: Any, base: dict) -> list:
    where = f"factors.{path}"
    tp = _leaves(ExperimentConfig).get(path) if kind == "field" else float
    numeric = kind in ("weight", "param") or tp in (int, float)
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
        same = tuple(sorted(nv)) if kind == "tasks" else nv
        if same in seen:
            if isinstance(raw, dict):
                continue  # an integer range may round two values to one
            raise ConfigError(where, f"level {_show(v)} is listed twice" if seen[same] == nv else
                              f"level {_show(v)} is the same task subset as {_show(seen[same])}; list it once")
        seen[same] = nv
        out.append(nv)
    return out


def _range(where: str, raw: dict, integer: bool) -> list:
    form = '{"log": [lo, hi], "n": k} or {"linear": [lo, hi], "n": k}'
    kinds = [k for k in ("log", "linear") if k in raw]
    if len(kinds) != 1 or set(raw) != {kinds[0], "n"}:
        raise ConfigError(where, f"a range is {form}, got {_show(raw)}")
    scale, ends, n = kinds[0], raw[kinds[0]], raw["n"]
    if not (isinstance(ends, list) and len(ends) == 2 and all(_is_number(x) and math.isfinite(x) for x in ends)):
        raise ConfigError(where, f"range {_show(raw)}: {scale} needs two numbers [lo, hi], got {_show(ends)}")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_RANGE_N:
        raise ConfigError(where, f"range {_show(raw)}: n must be an integer from 2 to {MAX_RANGE_N}, got {_show(n)}")
    lo, hi = ends
    if not lo < hi:
        raise ConfigError(where, f"range {_show(raw)}: needs lo < hi, got [{lo:g}, {hi:g}]")
    if scale == "log" and lo <= 0:
        raise ConfigError(where, f"range {_show(raw)}: a log range needs lo > 0, got {lo:g}; start above 0 or use linear")
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
            raise ConfigError(where, f"level {_show(v)} is refused: augment takes true (on) or false (every transform off)")
        return v
    if kind in ("weight", "param"):
        if not _is_number(v) or not math.isfinite(v):
            raise ConfigError(where, f"level {_show(v)} is refused: {path}: expected a number")
        return float(v)
    d = copy.deepcopy(base)
    _set(d, path, kind, v, base)
    try:
        cfg = ExperimentConfig.from_dict(d).to_dict()
    except ConfigError as e:
        raise ConfigError(where, f"level {_show(v)} is refused: {e}") from None
    return _get(cfg, path, kind)


def _check_param(where: str, name: str, methods: list) -> None:
    from mtl_core.weighting import WEIGHTINGS

    params = {m: list(WEIGHTINGS.get(m).defaults) for m in methods if isinstance(m, str) and m in WEIGHTINGS}
    if params and not any(name in p for p in params.values()):
        have = "; ".join(f"{m}: {', '.join(p) or 'none'}" for m, p in params.items())
        hint = _did_you_mean(name, sorted({x for p in params.values() for x in p}))
        raise ConfigError(where, f"{name!r} is not a hyperparameter of {', '.join(params)}; theirs: {have}{hint}")


# --- the grid ---

def _point(index: int, sizes: list[int]) -> list[int]:
    """The grid point ``index`` as one level index per factor, the first factor varying slowest."""
    out = []
    for n in reversed(sizes):
        index, r = divmod(index, n)
        out.append(r)
    return out[::-1]


def _build(base: dict, factors: list[_Factor], point: list[int], seed: int) -> ExperimentConfig:
    d = copy.deepcopy(base)
    for f, j in zip(factors, point):
        _set(d, f.path, f.kind, copy.deepcopy(f.levels[j]), base)
    d["seed"] = seed
    return ExperimentConfig.from_dict(d)


def _check_points(base: dict, factors: list[_Factor], points: list, configs: list, seed: int) -> None:
    """Validate every planned grid point; the first refusal names the factor and level to blame."""
    from mtl_core.validation import validate

    failed = {i: errors for i, cfg in enumerate(configs) if (errors := validate(cfg))}
    if not failed:
        return
    i = min(failed)
    err, point = failed[i][0], points[i]
    blamed = [j for j, f in enumerate(factors) if _covers(f, err.field)]
    if len(blamed) != 1:  # the factor whose other levels make this point valid
        blamed = [j for j, f in enumerate(factors) if any(
            not validate(_build(base, factors, [*point[:j], k, *point[j + 1:]], seed))
            for k in range(len(f.levels)) if k != point[j])]
    if len(blamed) == 1:
        j = blamed[0]
        f, value = factors[j], factors[j].levels[point[j]]
        everywhere = all(k in failed for k, p in enumerate(points) if p[j] == point[j])
        others = {g.path: g.levels[point[k]] for k, g in enumerate(factors) if k != j}
        context = "" if everywhere or not others else f" with {_level_label(others)}"
        raise ConfigError(f"factors.{f.path}", f"level {_show(value)} is refused{context}: {err}")
    base_errors = [e for e in validate(ExperimentConfig.from_dict(base)) if e.field == err.field]
    if not blamed and base_errors:
        raise ConfigError(f"base.{err.field}", base_errors[0].message)
    level = {f.path: f.levels[point[k]] for k, f in enumerate(factors)}
    raise ConfigError("factors", f"the grid point {_level_label(level)} is refused: {err}")


def _covers(f: _Factor, field: str) -> bool:
    """Whether a validation problem on ``field`` can come from factor ``f``."""
    if field == f.path or field.startswith(f.path + ".") or f.path.startswith(field + "."):
        return True
    return f.kind == "tasks" and (field == "tasks" or field.startswith("weighting.weights"))


def _size_message(sizes: list[int], total: int, n_points: int, n_seeds: int, n_base: int | None, limit: int,
                  sampled: bool) -> str:
    grid = f"{' x '.join(map(str, sizes))} = {total} grid points" if len(sizes) > 1 else _plural(total, "grid point")
    if sampled:
        grid = f"{n_points} sampled of {grid}"
    runs = n_points * n_seeds + (n_base or 0)
    counted = " (before baselines)" if n_base is None else f" + {n_base} baselines" if n_base else ""
    return (f"this study has {grid} x {_plural(n_seeds, 'seed')}{counted} = {runs} runs, more than the limit of {limit}; "
            "drop a factor's level, use fewer seeds, or sample=k a random subset of the grid (max_runs sets the limit)")


def _baseline_names(baselines: list[ExperimentConfig], factors: list[_Factor]) -> list[str]:
    """What tells a task's baselines apart (e.g. ``model.width=8``), for their names; "" when one."""
    dicts = [b.to_dict() for b in baselines]
    out = []
    for d in dicts:
        same_task = [x for x in dicts if x["tasks"] == d["tasks"]]
        apart = {f.path: _get(d, f.path, f.kind) for f in factors if f.kind != "tasks"
                 and len({json.dumps(_get(x, f.path, f.kind)) for x in same_task}) > 1}
        out.append(_level_label(apart))
    return out


# --- small helpers ---

def _set(d: dict, path: str, kind: str, value: Any, base: dict) -> None:
    """Apply one factor's level to a config dict (in place)."""
    if kind == "weight":
        d["weighting"]["weights"][path.removeprefix("weighting.weights.")] = value
    elif kind == "param":
        d["weighting"]["params"][path.removeprefix("weighting.params.")] = value
    elif kind == "tasks":
        d["tasks"] = value
        if isinstance(value, list):  # a base weight of a task this subset does not train is dropped
            d["weighting"]["weights"] = {t: w for t, w in d["weighting"]["weights"].items() if t in value}
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


def _get(d: dict, path: str, kind: str) -> Any:
    if kind == "augment":
        return any(d["augment"][n] != 0 for n in TRANSFORMS)
    if kind == "weight":
        return d["weighting"]["weights"].get(path.removeprefix("weighting.weights."), 1.0)
    if kind == "param":
        return d["weighting"]["params"].get(path.removeprefix("weighting.params."))
    for p in path.split("."):
        d = d[p]
    return list(d) if kind == "tasks" else d


def _leaves(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every field of a config dataclass by dotted path -> its type."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(_leaves(tp, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = tp
    return out


def _base_dict(spec: StudySpec) -> dict:
    return spec.base_config().to_dict()


def _merge(into: dict, over: dict) -> dict:
    for k, v in over.items():
        into[k] = _merge(into[k], v) if isinstance(v, dict) and isinstance(into.get(k), dict) else copy.deepcopy(v)
    return into


def _integer(v: Any, where: str) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise ConfigError(where, f"expected an integer, got {v!r}"[:200])
    return int(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _did_you_mean(word: str, choices: list[str]) -> str:
    """'; did you mean model.width?', or '' when nothing is close."""
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _name(*parts: str) -> str:
    name = " · ".join(p for p in parts if p)
    return name if len(name) <= 200 else name[:199] + "…"


def _fmt(path: str, v: Any) -> str:
    if isinstance(v, bool):
        return ("on" if v else "off") if path == "augment" else str(v).lower()
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "+".join(map(str, v))
    return str(v)


def _level_label(level: dict) -> str:
    return ", ".join(f"{k}={_fmt(k, v)}" for k, v in level.items())


def _show(v: Any) -> str:
    """A level as a person wrote it, for messages: 'pcgrad', 0.3, true, ['classification', 'depth']."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return json.dumps(v, default=str)[:200]
    return repr(v)[:200]
