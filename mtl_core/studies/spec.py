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
import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from mtl_core.config import ExperimentConfig, merge
from mtl_core.errors import ConfigError
from mtl_core.studies.factors import (
    Factor,
    did_you_mean,
    factor_kind,
    get_level,
    parse_factors,
    set_level,
    show,
)
from mtl_core.studies.search import parse_search
from mtl_core.tasks import TASKS
from mtl_core.training.validation import check, validate

_ENUMERATE_LIMIT = 50  # a grid over this many times max_runs is refused without counting its baselines


@dataclass(frozen=True)
class StudySpec:
    """A base config, factors to vary and seeds: many runs as one experiment."""

    name: str = ""
    base: dict = field(default_factory=dict)  # a partial ExperimentConfig dict, merged over the defaults
    factors: dict = field(default_factory=dict)  # factor -> levels, in the order given
    seeds: int | tuple[int, ...] = 3  # N -> seeds 1..N; or explicit seeds
    baselines: bool | tuple[str, ...] = False  # add every task's single-task baseline (or these tasks'), per seed
    sample: int = 0  # 0: the full grid; k: a random subset of k grid points
    sample_seed: int = 0
    max_runs: int = 200  # a larger study is refused
    # instead of a grid, an Optuna search over continuous factors (see mtl_core.studies.search):
    # {"trials": N, "space": {factor: {"log": [lo, hi]} | [choices]}, "sampler": "nsga2", "seed": 0}
    search: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if not isinstance(self.seeds, int):
            d["seeds"] = list(self.seeds)
        if isinstance(self.baselines, tuple):
            d["baselines"] = list(self.baselines)
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
                raise ConfigError(str(k), f"unknown key; allowed keys: {', '.join(names)}{did_you_mean(str(k), names)}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "name" and not isinstance(v, str):
                raise ConfigError(k, f"expected a string, got {v!r}"[:200])
            if k == "baselines" and isinstance(v, list) and all(isinstance(x, str) for x in v) and v:
                v = tuple(v)
            elif k == "baselines" and not isinstance(v, bool):
                raise ConfigError(k, f"expected true, false or a list of task names, got {v!r}"[:200])
            if k in ("base", "factors", "search") and not isinstance(v, dict):
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
        base = spec.base_config()
        spec.seed_list()
        if isinstance(spec.baselines, tuple):
            for t in spec.baselines:
                if t not in TASKS:
                    raise ConfigError("baselines", f"unknown task {t!r}; available: {', '.join(TASKS.available())}"
                                      f"{did_you_mean(t, TASKS.available())}")
            if not set(spec.baselines) & set(base.tasks) and "tasks" not in spec.factors:
                raise ConfigError("baselines", f"none of {', '.join(spec.baselines)} is a task the study trains "
                                  f"({', '.join(base.tasks)})")
        return spec

    def baselines_of(self, cfg: ExperimentConfig) -> list[ExperimentConfig]:
        """The single-task baselines this spec adds for one of its configs."""
        if not self.baselines:
            return []
        out = cfg.single_task_baselines("")
        return out if self.baselines is True else [b for b in out if b.tasks[0] in self.baselines]

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
            return ExperimentConfig.from_dict(merge(ExperimentConfig().to_dict(), self.base))
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


def factor_levels(spec: StudySpec) -> dict[str, list]:
    """Every factor's levels, ranges expanded, values as the config holds them."""
    return {f.path: copy.deepcopy(list(f.levels)) for f in parse_factors(spec.factors, _base_dict(spec))}


def plan_trial(spec: StudySpec, level: dict, seed: int) -> Planned:
    """The trial of ``level`` (factor -> value) at ``seed``: how a search's trials, asked as the
    study goes, become planned runs like a grid's."""
    base = _base_dict(spec)
    base_cfg = ExperimentConfig.from_dict(base)
    d = copy.deepcopy(base)
    for path, value in level.items():
        set_level(d, path, factor_kind(path, base_cfg), copy.deepcopy(value), base)
    d["seed"] = int(seed)
    d["name"] = _name(spec.name or base.get("name") or "study", _level_label(level), f"seed {seed}")
    cfg = check(ExperimentConfig.from_dict(d))
    return Planned(plan_key(cfg), cfg, dict(level), int(seed), "trial")


def planned_runs(spec: StudySpec, rows: list[dict]) -> list[Planned]:
    """The planned runs of a study's stored plan ``rows``: the spec's expansion, and the trials
    a search asked for since."""
    planned = {p.key: p for p in expand(spec)}
    for row in rows:
        if row["key"] not in planned and row["role"] == "trial":
            p = plan_trial(spec, row["level"], row["seed"])
            planned[p.key] = p
    keys = [row["key"] for row in rows]
    return sorted(planned.values(), key=lambda p: keys.index(p.key) if p.key in keys else len(keys))


def expand(spec: StudySpec) -> list[Planned]:
    """The study's runs: trials (grid x seeds, in grid order then seed), then the baselines
    (each distinct one x seeds). Raises a ConfigError naming the factor and the level, or the
    study's size, before anything runs. A search plans only its baselines here (those of the
    base config): its trials are asked as it goes (:func:`plan_trial`)."""
    if spec.search:
        return _expand_search(spec)
    if isinstance(spec.sample, bool) or not isinstance(spec.sample, int) or spec.sample < 0:
        raise ConfigError("sample", f"expected 0 (the full grid) or a number of grid points, got {spec.sample!r}")
    if isinstance(spec.max_runs, bool) or not isinstance(spec.max_runs, int) or spec.max_runs < 1:
        raise ConfigError("max_runs", f"expected a positive integer, got {spec.max_runs!r}")
    seeds = spec.seed_list()
    base = _base_dict(spec)
    factors = parse_factors(spec.factors, base)
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
            for b in spec.baselines_of(cfg):
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


def _expand_search(spec: StudySpec) -> list[Planned]:
    if spec.factors:
        raise ConfigError("search", "a study has factors (a grid) or a search, not both; move the factors into "
                          "search.space or drop the search")
    seeds = spec.seed_list()
    base_cfg = spec.base_config()
    baselines = spec.baselines_of(base_cfg)
    _, dims = parse_search(spec.search, spec.max_runs, len(seeds), len(baselines) * len(seeds))
    base = _base_dict(spec)
    for dim in dims:  # every end of every range, and every choice, must be a config the study can train
        ends = dim.choices if dim.kind == "categorical" else (dim.low, dim.high)
        for v in ends:
            d = copy.deepcopy(base)
            value = int(v) if dim.kind == "int" else v
            set_level(d, dim.path, factor_kind(dim.path, base_cfg), value, base)
            try:
                errors = validate(ExperimentConfig.from_dict(d))
            except ConfigError as e:
                errors = [e]
            if errors:
                raise ConfigError(f"search.space.{dim.path}", f"{show(value)} is refused: {errors[0]}")
    out = []
    title = spec.name or base.get("name") or "study"
    for b in baselines:
        for s in seeds:
            c = dataclasses.replace(b, seed=s, baseline_of="", name=_name(title, f"{b.tasks[0]} alone", f"seed {s}"))
            out.append(Planned(plan_key(c), c, {}, s, "baseline", b.tasks[0]))
    return out


# --- the grid ---

def _point(index: int, sizes: list[int]) -> list[int]:
    """The grid point ``index`` as one level index per factor, the first factor varying slowest."""
    out = []
    for n in reversed(sizes):
        index, r = divmod(index, n)
        out.append(r)
    return out[::-1]


def _build(base: dict, factors: list[Factor], point: list[int], seed: int) -> ExperimentConfig:
    d = copy.deepcopy(base)
    for f, j in zip(factors, point):
        set_level(d, f.path, f.kind, copy.deepcopy(f.levels[j]), base)
    d["seed"] = seed
    return ExperimentConfig.from_dict(d)


def _check_points(base: dict, factors: list[Factor], points: list, configs: list, seed: int) -> None:
    """Validate every planned grid point; the first refusal names the factor and level to blame."""
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
        raise ConfigError(f"factors.{f.path}", f"level {show(value)} is refused{context}: {err}")
    base_errors = [e for e in validate(ExperimentConfig.from_dict(base)) if e.field == err.field]
    if not blamed and base_errors:
        raise ConfigError(f"base.{err.field}", base_errors[0].message)
    level = {f.path: f.levels[point[k]] for k, f in enumerate(factors)}
    raise ConfigError("factors", f"the grid point {_level_label(level)} is refused: {err}")


def _covers(f: Factor, field: str) -> bool:
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


def _baseline_names(baselines: list[ExperimentConfig], factors: list[Factor]) -> list[str]:
    """What tells a task's baselines apart (e.g. ``model.width=8``), for their names; "" when one."""
    dicts = [b.to_dict() for b in baselines]
    out = []
    for d in dicts:
        same_task = [x for x in dicts if x["tasks"] == d["tasks"]]
        apart = {f.path: get_level(d, f.path, f.kind) for f in factors if f.kind != "tasks"
                 and len({json.dumps(get_level(x, f.path, f.kind)) for x in same_task}) > 1}
        out.append(_level_label(apart))
    return out


# --- small helpers ---

def _base_dict(spec: StudySpec) -> dict:
    return spec.base_config().to_dict()


def _integer(v: Any, where: str) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
        raise ConfigError(where, f"expected an integer, got {v!r}"[:200])
    return int(v)


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
        return ("x" if path == "data.image_size" else "+").join(map(str, v))  # 48x64, a height x width
    return str(v)


def _level_label(level: dict) -> str:
    return ", ".join(f"{k}={_fmt(k, v)}" for k, v in level.items())
