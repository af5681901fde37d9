"""An experiment's config as frozen dataclasses: JSON round trip and validation.

Edit with ``dataclasses.replace``; store with every run and checkpoint. Errors name the field
(dotted path) and the allowed values, e.g. ``optim.lr: must be > 0, got -1``.
"""
from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import typing
import zlib
from dataclasses import dataclass, field
from typing import Any

from mtl_core.errors import ConfigError

DEFAULT_TASKS = ("classification", "detection", "segmentation")
RESIZE_POLICIES = ("letterbox", "stretch", "crop")  # see mtl_core.data.resize
ON_ERROR = ("fail", "skip")  # a run on data with problems: refuse to start, or leave the bad rows out
SELECT_RULES = ("auto", "primary", "delta_m")  # what "best on validation" means (see SelectConfig)
SELECT_USES = ("best", "last", "mean_last")  # which model or evaluations a run reports and predicts with


def parse_image_size(value: Any, where: str = "data.image_size") -> int | tuple[int, int]:
    """An image size as a config holds it: ``64`` (square), ``[288, 384]`` or ``"288x384"``
    (height x width). A square given as one number stays one number, so configs written before
    sizes had two sides read and write unchanged."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(where, f"expected a size such as 64 or 288x384 (height x width), got {value!r}"[:200]) from None
        value = nums[0] if len(nums) == 1 else nums
    if isinstance(value, bool):
        raise ConfigError(where, f"expected a size such as 64 or [288, 384], got {value!r}")
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            not isinstance(x, bool) and isinstance(x, (int, float)) and float(x).is_integer() for x in value):
        return int(value[0]), int(value[1])
    raise ConfigError(where, f"expected a size such as 64 or [288, 384] (height, width), got {value!r}"[:200])


def size_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(height, width)`` of an image size (one number: a square)."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


@dataclass(frozen=True)
class TaskSpec:
    """One task of a config as an instance of a kind, and where its labels come from.

    A task named in ``ExperimentConfig.tasks`` without a spec is the built-in task of that name
    (``classification``, ``detection`` ... on the scenes), or the dataset's own description of that
    column (a label table infers each column's kind). A spec says what the dataset cannot:

    - ``kind``: ``classification``, ``multilabel``, ``binary``, ``regression``, ``count``,
      ``detection``, ``segmentation``, ``depth`` or ``normals`` (see :mod:`mtl_core.tasks`);
    - ``column``: the dataset column or target key holding its labels (empty: the task's name);
    - ``classes``: class names in index order (empty: the dataset's);
    - ``loss``: for ``regression``, ``l1`` (default) or ``smooth_l1``;
    - ``options``: numbers a kind reads, e.g. ``ignore_index`` (segmentation: a mask value that
      is not a label, default 255), ``max_count`` (count), ``depth_max``.
    """

    kind: str = ""
    column: str = ""
    classes: tuple[str, ...] = ()
    loss: str = ""
    title: str = ""
    options: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "scenes"
    # height x width the model sees: one number for a square (see parse_image_size; ``hw`` reads it)
    image_size: int | tuple[int, int] = 64
    # how an image of another shape is brought to image_size (mtl_core.data.resize): letterbox
    # (aspect kept, padded), stretch or crop; empty: the dataset's default (stretch for the
    # procedural scenes, which are drawn at the size; letterbox for real photos)
    resize: str = ""
    on_error: str = "fail"  # data with problems (see `check-data`): fail = refuse to start; skip = leave those rows out
    max_objects: int = 4
    num_shapes: int = 4
    noise: float = 0.04
    # procedural samples cost the same drawn fresh or again: 60,000 unique ones generalise better than
    # 8,000 seen seven times (demo accuracy after 900 steps 0.943 against about 0.91)
    train_size: int = 60_000
    val_size: int = 512
    test_size: int = 512
    root: str = ""
    # per task, training split only (see mtl_core.data.labels): a study of scarce, noisy or
    # mis-scaled labels is an ordinary run with these set
    label_fraction: dict[str, float] = field(default_factory=dict)  # task -> share of samples labelled; missing = 1
    label_noise: dict[str, float] = field(default_factory=dict)  # task -> share of labels replaced by a random class
    loss_scale: dict[str, float] = field(default_factory=dict)  # task -> loss multiplier before any weighting; missing = 1

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` of the model's input."""
        return size_hw(self.image_size)


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "hard_sharing"
    backbone: str = "small_cnn_s4"
    width: int = 16
    pretrained: bool = False
    norm: str = "batch"  # batch, or group (GroupNorm: batch-independent, e.g. for multi-process CPU runs)
    # what each task's head sits on: "" = the task's own head on the trunk's features; "aspp" =
    # DeepLab-v3's ASPP (256 channels, rates 12, 24, 36) per task, then the task's own head on it
    head: str = ""
    # a weights file for the backbone (a torchvision state dict such as resnet50-0676ba61.pth, or an
    # earlier run's checkpoint); read at the start, never downloaded, and used instead of pretrained
    weights_path: str = ""


@dataclass(frozen=True)
class WeightingConfig:
    method: str = "static"
    weights: dict[str, float] = field(default_factory=dict)  # task -> weight; missing = 1.0
    params: dict[str, float] = field(default_factory=dict)  # the method's hyperparameters
    rep_grad: bool = False  # gradient methods: work on the shared representation


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (p) or strengths; 0 turns a transform off. Training split only."""

    hflip: float = 0.5
    vflip: float = 0.0
    crop: float = 0.0
    crop_scale_min: float = 0.6
    rotation: float = 0.0
    color_jitter: float = 0.0
    noise: float = 0.0
    blur: float = 0.0
    blur_sigma: float = 1.0
    erasing: float = 0.0


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adamw"
    # the demo in under a minute (issue 17, bench/RESULTS.md): 900 steps of 32 at 3e-3 on the stride-4
    # small CNN reach accuracy 0.92, mAP@0.5 0.90, mIoU 0.80 (5 seeds) in about 50 s on 2 CPU cores
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 32
    steps: int = 900
    scheduler: str = "cosine"  # cosine, step (gamma every step_size steps) or constant
    warmup_steps: int = 50
    step_size: int = 0  # the step scheduler: steps between decays (0: none)
    gamma: float = 0.5  # the step scheduler: the factor at each decay
    grad_clip: float = 0.0


@dataclass(frozen=True)
class SelectConfig:
    """Model selection on validation: which model a run reports, predicts and is compared with.

    - ``use``: ``best`` (default) the model of the validation evaluation that scored best by
      ``rule``, kept as ``best.pt`` beside the last; ``last`` the model at the last step;
      ``mean_last`` the mean of the test metrics at the last ``last_k`` evaluations (the protocol
      of Nash-MTL, Navon et al. ICML 2022, and CAGrad, who average the last 10 epochs), with the
      last model for predictions.
    - ``rule``: ``primary`` the primary metric of ``task`` (default: the first task);
      ``delta_m`` Δm of the primary metrics against ``reference``, or, when it is empty, against
      the run's first validation evaluation, as LibMTL's ``_PerformanceMeter`` does without a
      base result (any fixed reference ranks evaluations alike but for each task's scale);
      ``auto``: ``primary`` for one task, else ``delta_m``.
    - ``reference``: task -> value of its primary metric (a preset's published single-task numbers).
    """

    use: str = "best"
    rule: str = "auto"
    task: str = ""
    last_k: int = 10
    reference: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = ""
    tasks: tuple[str, ...] = DEFAULT_TASKS
    # task name -> what it is, for tasks that are not a built-in name or the dataset's own column
    task_specs: dict[str, TaskSpec] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    # the protocol preset this run follows (assets/benchmarks/<name>.json: its published numbers
    # are shown beside the run's); empty: none
    benchmark: str = ""
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda
    precision: str = "auto"  # auto (bf16/fp16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16
    eval_every: int = 200  # an evaluation of the 512 validation scenes takes about 0.7 s: nine of them were a tenth of the demo
    # one more evaluation at this step (0: none), so the validation curves start within seconds of
    # the start rather than at the first eval_every
    first_eval: int = 10
    checkpoint_every: int = 500
    gradstats_every: int = 50
    time_limit: float = 0.0  # seconds of training; 0 = no limit
    baseline_of: str = ""  # for a single-task baseline: the id of the multi-task run it is for

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        if isinstance(self.data.image_size, tuple):
            d["data"]["image_size"] = list(self.data.image_size)
        for spec in d["task_specs"].values():
            spec["classes"] = list(spec["classes"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Any) -> ExperimentConfig:
        return _build(cls, d, "")

    @classmethod
    def from_json(cls, text: str | bytes) -> ExperimentConfig:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ConfigError("config", f"not valid JSON ({e}); upload a file saved from Setup") from None
        return cls.from_dict(d)

    def to_link(self) -> str:
        """This config as a URL token: only what differs from the defaults, so links stay short."""
        return to_link(changes(self.to_dict(), ExperimentConfig().to_dict()))

    @classmethod
    def from_link(cls, token: str) -> ExperimentConfig:
        """The config a :meth:`to_link` token holds, merged over the defaults; a ConfigError naming the
        field (``link: optim.lr: ...``) when it does not parse. Checking it against the registries
        (a task or method that exists) is :func:`mtl_core.training.validation.checked_link`'s."""
        d = from_link(token)
        if not isinstance(d, dict):
            raise ConfigError("link", f"the link holds {type(d).__name__}, not a config")
        try:
            cfg = cls.from_dict(merge(ExperimentConfig().to_dict(), d))
        except ConfigError as e:
            raise ConfigError(f"link: {e.field}", e.message) from None
        return cfg

    def single_task_baselines(self, run_id: str) -> list[ExperimentConfig]:
        """One config per task with the same backbone, data, budget and seed, for Δm."""
        out = []
        for t in self.tasks:
            w = dataclasses.replace(self.weighting, method="static", weights={t: 1.0}, params={}, rep_grad=False)
            data = dataclasses.replace(self.data, **{k: {x: v for x, v in getattr(self.data, k).items() if x == t}
                                                     for k in ("label_fraction", "label_noise", "loss_scale")})
            specs = {t: self.task_specs[t]} if t in self.task_specs else {}
            out.append(dataclasses.replace(self, name=f"{self.name or run_id} · {t} alone", tasks=(t,), task_specs=specs,
                                           weighting=w, data=data,
                                           model=dataclasses.replace(self.model, architecture="hard_sharing"),
                                           baseline_of=run_id))
        return out

    def task_weight(self, task: str) -> float:
        return float(self.weighting.weights.get(task, 1.0))


LINK_PREFIX = "c1."  # the link format's version: a later format keeps reading this one
LINK_MAX_CHARS = 8000  # far above any real config's link (a few hundred characters), far below a URL's limit
_LINK_MAX_BYTES = 64 * 1024


def changes(d: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """The entries of a config dict that differ from ``default`` (nested sections key by key;
    a dict of task values or a list is kept whole when it differs)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        dv = default.get(k)
        if isinstance(v, dict) and isinstance(dv, dict) and k not in WHOLE_DICTS:
            sub = changes(v, dv)
            if sub:
                out[k] = sub
        elif v != dv:
            out[k] = v
    return out


WHOLE_DICTS = {"weights", "params", "label_fraction", "label_noise", "loss_scale", "task_specs", "reference"}  # task/name -> value: one value


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A (partial) config dict ``over`` laid over ``base``: sections key by key, a dict of task
    values (weights, params, label_fraction ...) replaced whole, so ``{}`` clears it. A new dict."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in WHOLE_DICTS:
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set`` flags as a partial config dict: ``["optim.lr=0.01", "tasks=segmentation,normals"]``
    -> ``{"optim": {"lr": 0.01}, "tasks": ["segmentation", "normals"]}``. A value is read as JSON
    (numbers, true/false, lists, objects), else as a string; ``tasks`` also takes a comma list.
    Lay the result over a config with :func:`merge`."""
    out: dict[str, Any] = {}
    for item in items:
        path, eq, raw = item.partition("=")
        if not eq or not path.strip():
            raise ConfigError("--set", f"expected FIELD=VALUE such as optim.lr=0.01, got {item!r}"[:200])
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if path.strip() == "tasks" and isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        *parents, leaf = path.strip().split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError("--set", f"{item!r} sets a field inside {p!r}, which another --set gave a value")
        node[leaf] = value
    return out


def to_link(d: dict[str, Any]) -> str:
    """A compact, URL-safe token for a (partial) config dict: JSON, deflated, base64url."""
    raw = json.dumps(d, separators=(",", ":"), sort_keys=True).encode()
    return LINK_PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def from_link(token: str, what: str = "link") -> Any:
    """The JSON value a :func:`to_link` token holds; a ConfigError naming ``what`` when it does not parse."""
    if not isinstance(token, str) or not token.startswith(LINK_PREFIX):
        raise ConfigError(what, f"not a link made by MTL Studio (it should start with {LINK_PREFIX!r}); "
                          "copy the whole link again")
    if len(token) > LINK_MAX_CHARS:
        raise ConfigError(what, f"{len(token)} characters is too long for a link (at most {LINK_MAX_CHARS})")
    body = token[len(LINK_PREFIX):]
    try:
        packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, _LINK_MAX_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise ValueError("truncated or too large")
        return json.loads(raw)
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError, RecursionError):
        raise ConfigError(what, "the link is damaged (cut short or changed by hand); copy the whole link again") from None


def spec_from_dict(d: Any, where: str) -> TaskSpec:
    """A :class:`TaskSpec` from its JSON object; a ConfigError naming ``where`` and the field."""
    return _build(TaskSpec, d, where)


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _build(cls: type, d: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(d, dict):
        raise ConfigError(where, f"expected an object with keys {', '.join(f.name for f in dataclasses.fields(cls))}, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key; allowed keys: {', '.join(sorted(names))}")
    kwargs = {k: _convert(hints[k], v, f"{prefix}{k}") for k, v in d.items()}
    return cls(**kwargs)


def _convert(tp: Any, v: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, v, where + ".")
    if tp == (int | tuple[int, int]):
        return parse_image_size(v, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
            raise ConfigError(where, f"expected a list of names, got {v!r}"[:200])
        return tuple(v)
    if origin is dict:
        if not isinstance(v, dict):
            raise ConfigError(where, f"expected an object of name: number, got {type(v).__name__}")
        value_type = typing.get_args(tp)[1]
        if dataclasses.is_dataclass(value_type):
            return {str(k): _build(value_type, x, f"{where}.{k}.") for k, x in v.items()}
        out = {}
        for k, x in v.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ConfigError(f"{where}.{k}", f"expected a number, got {x!r}"[:200])
            out[str(k)] = float(x)
        return out
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(where, f"expected a number, got {v!r}"[:200])
        return float(v)
    if tp is int:
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise ConfigError(where, f"expected an integer, got {v!r}"[:200])
        return int(v)
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(where, f"expected true or false, got {v!r}"[:200])
        return v
    if tp is str:
        if not isinstance(v, str):
            raise ConfigError(where, f"expected a string, got {v!r}"[:200])
        return v
    raise TypeError(f"unsupported config type {tp} at {where}")
