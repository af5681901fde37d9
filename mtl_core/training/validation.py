"""Validation of an experiment config: every problem as a :class:`ConfigError` naming the field
and the allowed values, so the dashboard can show each next to its widget."""
from __future__ import annotations

import dataclasses
import difflib

from mtl_core.config import ON_ERROR, RESIZE_POLICIES, SELECT_RULES, SELECT_USES, ExperimentConfig
from mtl_core.data import DATASETS, build_dataset
from mtl_core.errors import ConfigError
from mtl_core.models import ARCHITECTURES, BACKBONES, HEADS, weights_file_errors
from mtl_core.protocols.benchmarks import preset_names
from mtl_core.tasks import KINDS, TASKS, merge_spec, supported_tasks, task_class
from mtl_core.weighting import WEIGHTINGS
from mtl_core.weights import weight_errors

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "step", "constant")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _range(errors: list[ConfigError], field: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    bad = value <= lo if lo_open else value < lo
    if bad or value > hi:
        left = "(" if lo_open else "["
        errors.append(ConfigError(field, f"must be in {left}{lo:g}, {hi:g}], got {value:g}"))


def _close(word: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


def _choice(errors: list[ConfigError], field: str, value: str, allowed) -> None:
    if value not in allowed:
        errors.append(ConfigError(field, f"{value!r} is not allowed; choose one of: {', '.join(allowed)}"))


def dataset_tasks(cfg: ExperimentConfig) -> tuple[str, ...] | None:
    """The tasks the configured dataset can teach: the registered tasks whose label it supplies,
    then the columns it describes (a label table, read from disk) or declares without reading
    (``declares``: CelebA's 40 attributes); None when the dataset itself is unknown."""
    if cfg.data.dataset not in DATASETS:
        return None
    cls = DATASETS.get(cfg.data.dataset)
    supplied = getattr(cls, "supplies", None)
    if supplied is None:
        info = build_dataset(cfg, "val", cfg.seed).info
        return tuple(supported_tasks(info.tasks, info.specs))
    return tuple(supported_tasks(supplied, getattr(cls, "declares", None)))


def takes_label_noise(cfg: ExperimentConfig, task: str) -> bool:
    """Whether ``data.label_noise`` can apply to ``task`` (a kind with one class per image)."""
    try:
        return task_class(task, cfg.task_specs.get(task)).takes_label_noise()
    except ConfigError:
        return False


def label_errors(cfg: ExperimentConfig) -> list[ConfigError]:
    """What is wrong with ``data.label_fraction``, ``data.label_noise`` and ``data.loss_scale``."""
    e: list[ConfigError] = []
    limits = {"label_fraction": (0.0, 1.0, True), "label_noise": (0.0, 1.0, False), "loss_scale": (0.0, 1e6, True)}
    for name, (lo, hi, lo_open) in limits.items():
        for t, v in getattr(cfg.data, name).items():
            where = f"data.{name}.{t}"
            if t not in cfg.tasks:
                e.append(ConfigError(where, f"{t!r} is not a selected task; selected: {', '.join(cfg.tasks)}"))
                continue
            _range(e, where, v, lo, hi, lo_open=lo_open)
            if name == "label_noise" and v > 0 and not takes_label_noise(cfg, t):
                takes = [x for x in cfg.tasks if takes_label_noise(cfg, x)] or [k for k in KINDS.available()
                                                                              if KINDS.get(k).takes_label_noise()]
                e.append(ConfigError(where, f"{t} has no single class per image to replace; label noise "
                                     f"applies to: {', '.join(takes)}"))
    return e


def validate(cfg: ExperimentConfig) -> list[ConfigError]:
    """All problems with ``cfg`` (empty when it is good to train)."""
    e: list[ConfigError] = []
    d, m, w, a, o = cfg.data, cfg.model, cfg.weighting, cfg.augment, cfg.optim
    if len(cfg.name) > 200:
        e.append(ConfigError("name", "at most 200 characters"))
    # tasks
    if not cfg.tasks:
        e.append(ConfigError("tasks", f"select at least one task; available: {', '.join(TASKS.available())}"))
    if len(set(cfg.tasks)) != len(cfg.tasks):
        e.append(ConfigError("tasks", "a task is listed twice"))
    for t, spec in cfg.task_specs.items():
        if t not in cfg.tasks:
            e.append(ConfigError(f"task_specs.{t}", f"{t!r} is not a selected task; selected: {', '.join(cfg.tasks)}"))
        if spec.kind:
            _choice(e, f"task_specs.{t}.kind", spec.kind, KINDS.available())
    # data
    _choice(e, "data.dataset", d.dataset, DATASETS.available())
    for side, n in zip(("height", "width"), d.hw):
        if not 32 <= n <= 512:
            e.append(ConfigError("data.image_size", f"{side} must be in [32, 512] pixels, got {n}"))
    if d.resize:
        _choice(e, "data.resize", d.resize, RESIZE_POLICIES)
    _choice(e, "data.on_error", d.on_error, ON_ERROR)
    _range(e, "data.max_objects", d.max_objects, 1, 10)
    _range(e, "data.num_shapes", d.num_shapes, 2, 6)
    _range(e, "data.noise", d.noise, 0, 0.5)
    _range(e, "data.train_size", d.train_size, 1, 10_000_000)
    _range(e, "data.val_size", d.val_size, 1, 1_000_000)
    _range(e, "data.test_size", d.test_size, 1, 1_000_000)
    e += label_errors(cfg)
    if not e or all(x.field not in ("data.dataset", "data.image_size") for x in e):
        try:
            supplied = dataset_tasks(cfg)
        except ConfigError as err:
            e.append(err)
            supplied = None
        for t in cfg.tasks:
            declared = cfg.task_specs.get(t)
            if supplied is not None and t not in supplied and not (declared and declared.kind):
                what = f"the {d.dataset} dataset does not provide {t!r}" if t in TASKS else \
                    f"unknown task {t!r}: the {d.dataset} dataset has no task or column of that name"
                e.append(ConfigError("tasks", f"{what}; it provides: {', '.join(supplied) or 'none'}"
                                     + _close(t, list(supplied))))
    # model
    _choice(e, "model.architecture", m.architecture, ARCHITECTURES.available())
    _choice(e, "model.backbone", m.backbone, BACKBONES.available())
    _range(e, "model.width", m.width, 4, 256)
    _choice(e, "model.norm", m.norm, ("batch", "group"))
    if m.head not in HEADS:
        e.append(ConfigError("model.head", f"{m.head!r} is not allowed; choose '' (each task's own head on the "
                             "backbone) or aspp (DeepLab-v3's ASPP before each task's head)"))
    if m.weights_path:
        e += weights_file_errors(m)
    # weighting
    _choice(e, "weighting.method", w.method, WEIGHTINGS.available())
    uses = getattr(WEIGHTINGS.get(w.method), "uses_weights", "") if w.method in WEIGHTINGS else ""
    e += weight_errors(cfg.tasks, {**{t: 1.0 for t in cfg.tasks}, **w.weights}, uses)
    if w.method in WEIGHTINGS:
        try:
            WEIGHTINGS.get(w.method)(list(cfg.tasks) or ["x"], params=w.params, weights=None, rep_grad=w.rep_grad)
        except ConfigError as err:
            e.append(err)
        if w.rep_grad and m.architecture in ARCHITECTURES and not ARCHITECTURES.get(m.architecture).supports_rep:
            e.append(ConfigError("weighting.rep_grad", f"the {m.architecture} architecture has no single shared representation; "
                                 "turn rep_grad off or use hard_sharing"))
    # augmentation
    for name in ("hflip", "vflip", "crop", "blur", "erasing", "color_jitter"):
        _range(e, f"augment.{name}", getattr(a, name), 0, 1)
    _range(e, "augment.crop_scale_min", a.crop_scale_min, 0, 1, lo_open=True)
    _range(e, "augment.rotation", a.rotation, 0, 180)
    _range(e, "augment.noise", a.noise, 0, 1)
    _range(e, "augment.blur_sigma", a.blur_sigma, 0, 10, lo_open=True)
    # optimisation
    _choice(e, "optim.optimizer", o.optimizer, OPTIMIZERS)
    _choice(e, "optim.scheduler", o.scheduler, SCHEDULERS)
    _range(e, "optim.lr", o.lr, 0, 10, lo_open=True)
    _range(e, "optim.weight_decay", o.weight_decay, 0, 1)
    _range(e, "optim.momentum", o.momentum, 0, 1)
    _range(e, "optim.batch_size", o.batch_size, 1, 4096)
    _range(e, "optim.steps", o.steps, 1, 10_000_000)
    _range(e, "optim.warmup_steps", o.warmup_steps, 0, 10_000_000)
    _range(e, "optim.step_size", o.step_size, 0, 10_000_000)
    _range(e, "optim.gamma", o.gamma, 0, 1, lo_open=True)
    _range(e, "optim.grad_clip", o.grad_clip, 0, 1e6)
    if o.batch_size > d.train_size:
        e.append(ConfigError("optim.batch_size", f"batch size {o.batch_size} is bigger than the training set "
                             f"({d.train_size} samples); lower it or raise data.train_size"))
    # run
    _choice(e, "device", cfg.device, DEVICES)
    _choice(e, "precision", cfg.precision, PRECISIONS)
    _range(e, "seed", cfg.seed, 0, 2**31 - 1)
    _range(e, "eval_every", cfg.eval_every, 1, 10_000_000)
    _range(e, "first_eval", cfg.first_eval, 0, 10_000_000)
    _range(e, "checkpoint_every", cfg.checkpoint_every, 0, 10_000_000)
    _range(e, "gradstats_every", cfg.gradstats_every, 0, 10_000_000)
    _range(e, "time_limit", cfg.time_limit, 0, 1e7)
    e += select_errors(cfg)
    return e


def select_errors(cfg: ExperimentConfig) -> list[ConfigError]:
    """What is wrong with ``select`` (model selection on validation)."""
    e: list[ConfigError] = []
    s = cfg.select
    _choice(e, "select.use", s.use, SELECT_USES)
    _choice(e, "select.rule", s.rule, SELECT_RULES)
    _range(e, "select.last_k", s.last_k, 1, 10_000)
    if s.task and s.task not in cfg.tasks:
        e.append(ConfigError("select.task", f"{s.task!r} is not a selected task; selected: {', '.join(cfg.tasks)}"))
    for t in s.reference:
        if t not in cfg.tasks:
            e.append(ConfigError(f"select.reference.{t}", f"{t!r} is not a selected task; selected: {', '.join(cfg.tasks)}"))
    if cfg.benchmark:
        _choice(e, "benchmark", cfg.benchmark, preset_names())
    return e


def check(cfg: ExperimentConfig) -> ExperimentConfig:
    """Raise the first problem found (all of them are in the message when there are several);
    else ``cfg`` with its tasks resolved (:func:`resolve_tasks`): the config a run records."""
    errors = validate(cfg)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        first = errors[0]
        raise ConfigError(first.field, first.message + "; also: " + "; ".join(str(x) for x in errors[1:]))
    return resolve_tasks(cfg)


def is_builtin(cfg: ExperimentConfig, task: str) -> bool:
    """Whether ``task`` is the task registered under its name (a scenes shorthand, a plugin), as
    the config uses it, so it needs no spec of its own."""
    if task not in TASKS:
        return False
    try:
        return task_class(task, cfg.task_specs.get(task)) is TASKS.get(task)
    except ConfigError:
        return False


def resolve_tasks(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with a whole spec for every task that is not a built-in name: what the dataset
    found for it (kind, classes, options such as a regression label's mean) under what the config
    declared. A run records this, so its config says what each task was and the run predicts,
    is compared and is summarised without opening its data again."""
    need = [t for t in cfg.tasks if not is_builtin(cfg, t)]
    if not need:
        return cfg
    info = build_dataset(cfg, "val", cfg.seed).info
    specs = dict(cfg.task_specs)
    for t in need:
        specs[t] = merge_spec(info.specs.get(t), cfg.task_specs.get(t))
    return dataclasses.replace(cfg, task_specs=specs)


def checked_link(token: str) -> ExperimentConfig:
    """The config a setup link holds, parsed and validated: a ConfigError naming the field
    (``link: optim.lr: ...``) when it does not parse or would not train."""
    cfg = ExperimentConfig.from_link(token)
    errors = validate(cfg)
    if errors:
        raise ConfigError(f"link: {errors[0].field}", errors[0].message)
    return cfg
