"""Per-task feature importance: how much each task relies on each channel of the shared backbone.

First-order Taylor importance (Molchanov, Tobias, Frosio and Kautz, "Pruning Convolutional Neural
Networks for Resource Efficient Inference", ICLR 2017; Molchanov, Mallya, Tyree, Frosio and Kautz,
"Importance Estimation for Neural Network Pruning", CVPR 2019). For task ``t`` and channel ``c``
of a feature map ``A`` (a backbone stage, or the backbone's output that the heads read), on one
batch with the task's own (label-masked) loss ``L_t``::

    s_t(c) = sum over samples and pixels of  dL_t/dA_c * A_c

is the gradient of ``L_t`` with respect to a gate of 1 multiplying channel ``c``, so ``-s_t(c)``
is the first-order change of ``L_t`` when the channel is zeroed. The importance is ``|s_t(c)|``
averaged over the batches. This is the *activation* (feature-map) form of the criterion, with the
batch summed inside the absolute value, as CVPR 2019 does for a channel's gate (one group of
parameters; here a virtual gate of 1 instead of BatchNorm's scale). ICLR 2017 takes the absolute
value per image instead, which counts a channel that helps some images and hurts others as
important; zeroing a channel acts on every image, so the batch sum is the better estimate of what
pruning it costs. Deviation: CVPR 2019 squares it; we keep the absolute value, an estimated loss
change, so one large channel does not swamp a row. Rows are normalised per task to sum to one.

A task **uses** a channel when its normalised importance is at least ``threshold`` times the mean
of its row (``threshold / C``); :meth:`Importance.groups` sorts the channels into used by every
task, by exactly one task, by some (more than one, not all), and by none.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError, MTLError
from mtl_core.inference.predictor import Predictor
from mtl_core.inference.samples import run_dataset
from mtl_core.training.evaluation import iterate_batches
from mtl_core.training.loop import masked_loss

DEFAULT_THRESHOLD = 0.1  # a tenth of the average channel's share of a task's importance
OUTPUT = "features"  # the backbone's output, the shared representation the heads read
citation = ("Molchanov, Mallya, Tyree, Frosio and Kautz, 'Importance Estimation for Neural Network Pruning', "
            "CVPR 2019 (first-order Taylor, activation form of Molchanov et al., ICLR 2017).")


@dataclass
class Importance:
    """Per layer, a ``(T, C)`` array of each task's normalised importance per channel (rows sum to
    1; a task whose loss never reached the layer has a row of zeros)."""

    tasks: list[str]
    layers: dict[str, np.ndarray]
    threshold: float = DEFAULT_THRESHOLD
    batches: int = 0
    citation: str = citation

    def used(self, layer: str) -> np.ndarray:
        """``(T, C)`` bool: task ``t`` uses channel ``c`` (importance >= threshold x the row's mean)."""
        values = self.layers[layer]
        mean = values.mean(axis=1, keepdims=True)  # (T, 1)
        return (values >= self.threshold * mean) & (values > 0)

    def groups(self, layer: str) -> dict[str, list[int]]:
        """Channels by who uses them: ``"all"``, ``"only <task>"`` per task, ``"some"`` (more than one
        task, not all; only with three tasks or more) and ``"none"``, each a sorted channel list."""
        used = self.used(layer)  # (T, C)
        count = used.sum(axis=0)  # (C,)
        out: dict[str, list[int]] = {"all": np.flatnonzero(count == len(self.tasks)).tolist()}
        for i, t in enumerate(self.tasks):
            out[f"only {t}"] = [] if len(self.tasks) == 1 else np.flatnonzero(used[i] & (count == 1)).tolist()
        out["some"] = np.flatnonzero((count > 1) & (count < len(self.tasks))).tolist()
        out["none"] = np.flatnonzero(count == 0).tolist()
        return out

    def summary(self, layer: str) -> list[str]:
        """The groups in words, e.g. ``["12 of 32 channels serve all 3 tasks", "5 serve detection only", ...]``."""
        g, n = self.groups(layer), self.layers[layer].shape[1]
        every = "the task" if len(self.tasks) == 1 else ("both tasks" if len(self.tasks) == 2 else f"all {len(self.tasks)} tasks")
        lines = [f"{len(g['all'])} of {n} channels serve {every}"]
        if len(self.tasks) > 1:
            lines += [f"{len(g[f'only {t}'])} serve {t} only" for t in self.tasks]
        if len(self.tasks) > 2:
            lines.append(f"{len(g['some'])} serve some tasks but not all")
        lines.append(f"{len(g['none'])} serve no task")
        return lines

    def order(self, layer: str) -> list[int]:
        """Channels sorted so that blocks show in a heat map: by the task that uses them most (in
        task order; channels no task uses last), then by total importance, largest first."""
        values = self.layers[layer]  # (T, C)
        top = np.where(self.used(layer).any(axis=0), values.argmax(axis=0), len(self.tasks))
        return sorted(range(values.shape[1]), key=lambda c: (int(top[c]), -float(values[:, c].sum()), c))

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per layer and channel (``layer``, ``channel``, then one column per task), for a CSV."""
        return [{"layer": name, "channel": c, **{t: float(v[i, c]) for i, t in enumerate(self.tasks)}}
                for name, v in self.layers.items() for c in range(v.shape[1])]

    def to_csv(self) -> str:
        """:meth:`to_rows` as CSV text."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, ["layer", "channel", *self.tasks], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_rows())
        return buf.getvalue()

    def to_plain(self) -> dict[str, Any]:
        """Lists only (no numpy), for pages and caches: per layer the values, who uses what, the
        channel order, groups and summary lines."""
        return {"tasks": list(self.tasks), "threshold": self.threshold, "batches": self.batches,
                "layers": {name: {"values": v.tolist(), "used": self.used(name).tolist(), "order": self.order(name),
                                  "groups": self.groups(name),
                                  "summary": self.summary(name)} for name, v in self.layers.items()}}


def shared_backbone(model: nn.Module) -> nn.Module:
    """The model's single shared backbone; an architecture without one is refused, by name."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module) or not hasattr(backbone, "stages"):
        name = getattr(model, "name", type(model).__name__)
        raise ConfigError("model.architecture", f"the {name} architecture has no single shared backbone, so its "
                          "features are not shared by every task; feature importance needs one "
                          "(hard_sharing, mtan, pad_net or segnet_mtan)")
    return backbone


class _Recorder:
    """Wraps ``backbone.stages`` so every stage's output (and the final output) is kept, in the
    graph, while the model's own forward runs unchanged."""

    def __init__(self, backbone: nn.Module) -> None:
        self.backbone, self.original = backbone, backbone.stages
        self.stages: list[Tensor] = []
        self.output: Tensor | None = None

    def __enter__(self) -> _Recorder:
        def stages(x: Tensor, *args: Any, **kwargs: Any):  # the same protocol: yields each stage, continues with what is sent
            gen = self.original(x, *args, **kwargs)  # (segnet's stages also take a trace to fill)
            out = next(gen)
            while True:
                sent = yield out
                self.stages.append(sent)  # what the rest of the network reads
                try:
                    out = gen.send(sent)
                except StopIteration as stop:
                    self.output = stop.value
                    return stop.value

        self.backbone.stages = stages  # an instance attribute, read by forward and run_stages alike
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.backbone.stages  # the class's method again

    def reset(self) -> None:
        self.stages, self.output = [], None


def _losses(tasks: dict[str, Any], outputs: dict[str, Any], targets: dict[str, Any]) -> dict[str, Tensor | None]:
    """Each task's loss on the samples labelled for it (``None`` when none are)."""
    out: dict[str, Tensor | None] = {}
    for t, task in tasks.items():
        target, valid = task.target_of(targets)
        has = valid is None or bool(torch.as_tensor(valid).any())
        out[t] = masked_loss(task, outputs[t], target, valid) if has else None
    return out


def feature_importance(model: nn.Module, tasks: dict[str, Any], batches: Iterable[tuple[Tensor, dict[str, Any]]],
                       stages: bool = True, threshold: float = DEFAULT_THRESHOLD,
                       layers: Sequence[str] | None = None, device: str | torch.device = "cpu") -> Importance:
    """Each task's first-order Taylor importance of every channel of ``model``'s shared backbone:
    its output (``"features"``) and, with ``stages``, each earlier stage (``"stage1"`` ...), over
    ``batches`` of ``(images, targets)`` (in eval mode; the model's weights and mode are left as they were).
    ``layers`` keeps only those names."""
    if not 0 <= threshold:
        raise ConfigError("threshold", f"threshold {threshold} is negative; use e.g. {DEFAULT_THRESHOLD}")
    backbone = shared_backbone(model)
    names = list(tasks)
    device = torch.device(device)
    sums: dict[str, Tensor] = {}
    n = 0
    was_training = model.training
    model.eval()
    try:
        with _Recorder(backbone) as rec, torch.enable_grad():
            for images, targets in batches:
                rec.reset()
                x = images.to(device).float().requires_grad_(True)  # so every stage is in a graph
                outputs = model(x)
                maps = {f"stage{j + 1}": s for j, s in enumerate(rec.stages) if s is not rec.output}
                maps = {**(maps if stages else {}), OUTPUT: rec.output}
                if layers is not None:
                    unknown = [k for k in layers if k not in maps]
                    if unknown:
                        raise ConfigError("layer", f"no layer {', '.join(unknown)} in this backbone; "
                                          f"choose from {', '.join(maps)}")
                    maps = {k: v for k, v in maps.items() if k in layers}
                losses = _losses(tasks, outputs, _to(targets, device))
                for i, t in enumerate(names):
                    loss = losses[t]
                    grads = (torch.autograd.grad(loss, list(maps.values()), retain_graph=True, allow_unused=True)
                             if loss is not None and loss.requires_grad else [None] * len(maps))
                    for (name, a), g in zip(maps.items(), grads, strict=True):
                        row = sums.setdefault(name, torch.zeros(len(names), a.shape[1], dtype=torch.float64))
                        if g is not None:
                            row[i] += (g.detach() * a.detach()).double().sum(dim=(0, 2, 3)).abs().cpu()  # (C,)
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise MTLError("feature importance needs at least one batch of images")
    return Importance(names, {k: _normalise((v / n).numpy()) for k, v in sums.items()}, threshold, n)


def _normalise(values: np.ndarray) -> np.ndarray:
    total = values.sum(axis=1, keepdims=True)  # (T, 1)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj


def checkpoint_importance(checkpoint: str, batches: int = 4, batch_size: int = 16, stages: bool = True,
                          threshold: float = DEFAULT_THRESHOLD, layers: Sequence[str] | None = None) -> Importance:
    """Feature importance of a checkpoint's model on the first ``batches`` batches of its run's
    validation split (in order: nothing random)."""
    if batches < 1:
        raise ConfigError("batches", f"--batches {batches}: use 1 or more validation batches, e.g. --batches 4")
    predictor = Predictor(checkpoint)
    shared_backbone(predictor.model)  # refuse before reading any data
    try:
        dataset = run_dataset(predictor.config, "val")
    except (OSError, ValueError) as e:
        raise MTLError(f"the run's val split cannot be read here: {e}") from None
    if not len(dataset):
        raise MTLError("the run's validation split is empty; feature importance needs its images")
    data = iterate_batches(dataset, batch_size, batches * batch_size)
    return feature_importance(predictor.model, predictor.tasks, data, stages, threshold, layers, predictor.device)


def run_importance(store: Any, run_id: str, **kwargs: Any) -> Importance:
    """Feature importance of a run's chosen checkpoint (``RunStore.chosen_checkpoint``)."""
    ck = store.chosen_checkpoint(run_id)
    if ck is None:
        raise MTLError(f"run {run_id} has no checkpoint yet; let it train until one is saved")
    return checkpoint_importance(ck["path"], **kwargs)
