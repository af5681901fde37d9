"""Structured channel pruning: whole channels removed, so the model really is smaller and faster.

Unlike :func:`mtl_core.deploy.compress.prune_global_l1` (zeroed weights, same shapes, same
speed), this removes convolution filters and linear units together with every weight that reads
them: the layers get narrower, so parameters, multiply-adds, file size and CPU latency all go
down. The bookkeeping (which BatchNorm, residual sum, concatenation and next layer must lose
the same channels) is Torch-Pruning's dependency graph: Fang, Ma, Song, Mi and Wang, "DepGraph:
Towards Any Structural Pruning" (CVPR 2023). Ranking channels by the L2 norm of their whole
coupled group follows Li, Kadav, Durdanovic, Samet and Graf, "Pruning Filters for Efficient
ConvNets" (ICLR 2017).

What is pruned: every layer outside the task heads (for ``hard_sharing`` that is the shared
backbone). Each head is passed to Torch-Pruning as an ignored layer, so its own channels and its
output layer keep their sizes; only its first layer's *input* narrows with the backbone's output,
and every task's output shape stays as it was.

How much: ``amount`` of each coupled group's channels (per layer, not ranked globally): every
layer keeps the same share, so no thin layer is wiped out by a wide one whose weights happen to
be smaller, and ``amount`` means the same everywhere (0.5 keeps half of every layer; the
multiply-adds of a conv between two pruned layers fall to about a quarter). With GroupNorm
(``model.norm = "group"``) channels go from every group alike, so a layer with one channel per
group keeps all of them.

Saved structure: the pruning history (layer name, in or out channels, indices), JSON beside the
weights; :func:`restore_structure` replays it on a model built from the run's config, so loading a
pruned checkpoint needs no pickle of modules.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mtl_core.config import size_hw
from mtl_core.errors import ConfigError, MTLError

citation = ("Fang, Ma, Song, Mi and Wang, 'DepGraph: Towards Any Structural Pruning', CVPR 2023; "
            "Li, Kadav, Durdanovic, Samet and Graf, 'Pruning Filters for Efficient ConvNets', ICLR 2017.")
# architectures whose dependency graph Torch-Pruning follows correctly (output shapes checked in tests)
SUPPORTED = ("hard_sharing", "mtan", "pad_net", "segnet_mtan", "single_task")
# the others stack the experts' or tasks' features and mix them with learned gates or cross-stitch
# weights; the graph mis-maps channel indices through that stacking and the pruned model breaks
UNSUPPORTED_WHY = "mixes stacked expert or task features with learned weights, which channel pruning cannot follow"
IMPORTANCES = ("magnitude", "taylor")

Importance = str | Callable[[Any], Tensor | None] | Mapping[str, Tensor] | None


class ScoreImportance:
    """Per-channel scores given from outside (e.g. per-task importance), as a Torch-Pruning importance.

    ``scores`` maps a layer name (``"backbone.stem.0"``) to one score per output channel; a coupled
    group is ranked by the scores of the first of its layers named there, lowest pruned first. A
    group none of whose layers is named is left whole (Torch-Pruning skips a group scored ``None``).
    """

    def __init__(self, scores: Mapping[str, Tensor], names: dict[nn.Module, str]) -> None:
        self.scores = {k: torch.as_tensor(v, dtype=torch.float32).flatten() for k, v in scores.items()}
        self.names = names

    def __call__(self, group) -> Tensor | None:
        for dep, idxs in group:
            name = self.names.get(dep.target.module)
            if name in self.scores and getattr(dep.handler, "__name__", "") == "prune_out_channels":
                score = self.scores[name]
                if score.numel() != len(idxs):
                    raise ConfigError("importance", f"{score.numel()} scores for {name}, which has {len(idxs)} channels")
                return score
        return None


def check_architecture(name: str) -> None:
    if name not in SUPPORTED:
        raise ConfigError("model.architecture", f"{name} {UNSUPPORTED_WHY}: use hard_sharing (or one of "
                          f"{', '.join(SUPPORTED[1:])}) to prune channels, or int8 quantization for {name}")


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The task heads: ignored by the pruner, so their outputs keep their sizes."""
    heads = getattr(model, "heads", None)
    if not isinstance(heads, nn.ModuleDict):
        raise MTLError(f"{type(model).__name__} has no task heads to keep; channel pruning needs them")
    return list(heads.values())


def _shapes(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return {k: _shapes(v) for k, v in outputs.items()}
    return tuple(outputs.shape)


def _importance(importance: Importance, model: nn.Module):
    import torch_pruning as tp

    if importance is None or importance == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)  # L2 norm over the whole coupled group
    if importance == "taylor":
        return tp.importance.GroupTaylorImportance()  # |weight x gradient|: needs a backward first
    if isinstance(importance, Mapping):
        return ScoreImportance(importance, {m: n for n, m in model.named_modules()})
    if callable(importance):
        return importance
    raise ConfigError("importance", f"unknown importance {importance!r}; use one of {', '.join(IMPORTANCES)}, "
                      "a callable on a Torch-Pruning group, or {layer name: per-channel scores}")


def _pruner(model: nn.Module, example: Tensor, amount: float, importance) -> Any:
    import torch_pruning as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "unwrapped parameters": our models have none that are pruned
        return tp.pruner.MetaPruner(model, example, importance=importance, pruning_ratio=float(amount),
                                    global_pruning=False, ignored_layers=head_modules(model))


def prune_channels(model: nn.Module, amount: float, example_images: Tensor, importance: Importance = None,
                   loss_fn: Callable[[nn.Module], Tensor] | None = None) -> nn.Module:
    """``model`` with ``amount`` of every coupled channel group outside the task heads removed, in place.

    ``example_images``: float ``(B, 3, H, W)`` the graph is traced on (shapes only matter).
    ``importance``: ``"magnitude"`` (default: group L2 norm), ``"taylor"`` (needs ``loss_fn(model)``,
    a scalar loss on a training batch, for the gradients), a callable on a Torch-Pruning group, or
    ``{layer name: per-output-channel scores}`` (see :class:`ScoreImportance`).
    The model's ``pruning_history`` attribute holds what was removed, for :func:`restore_structure`.
    """
    if not 0.0 <= amount < 1.0:
        raise ConfigError("prune_channels", f"must be in [0, 1), got {amount}; e.g. 0.5 removes half the channels")
    arch = getattr(type(model), "name", type(model).__name__)
    check_architecture(arch)
    was_training = model.training
    model.eval()  # the tracing forward must not move BatchNorm's running statistics
    example = example_images[:1].float()
    with torch.no_grad():
        before = _shapes(model(example))
    imp = _importance(importance, model)
    if importance == "taylor":
        if loss_fn is None:
            raise ConfigError("importance", "taylor importance needs a loss (loss_fn) for its gradients")
        model.zero_grad(set_to_none=True)
        loss_fn(model).backward()
    try:
        pruner = _pruner(model, example, amount, imp)
        if amount > 0:
            pruner.step()
    except (RuntimeError, IndexError, ValueError) as e:
        raise MTLError(f"Torch-Pruning could not prune this {arch} model ({type(e).__name__}: {str(e)[:200]})") from None
    model.zero_grad(set_to_none=True)
    history = [[name, bool(out), [int(getattr(i, "idx", i)) for i in idxs]] for name, out, idxs in pruner.pruning_history()]
    with torch.no_grad():
        after = _shapes(model(example))
    if after != before:
        raise MTLError(f"pruning changed the task outputs of this {arch} model: {before} -> {after}")
    model.pruning_history = history
    model.train(was_training)
    return model


def restore_structure(model: nn.Module, history: list, image_size: int | tuple[int, int] | list[int]) -> nn.Module:
    """Replay a saved pruning ``history`` on a freshly built model of the same config, in place, so
    its shapes match the pruned checkpoint's weights (load them afterwards). ``image_size``: the
    run's, one number for a square or ``(height, width)``."""
    import torch_pruning as tp

    model.eval()
    example = torch.zeros(1, 3, *size_hw(image_size))  # (1, 3, H, W): the graph needs shapes only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    try:
        graph.load_pruning_history([[n, bool(o), [int(i) for i in idxs]] for n, o, idxs in history])
    except (AttributeError, IndexError, RuntimeError, ValueError) as e:
        raise MTLError(f"the saved channel-pruning structure does not fit this model: {str(e)[:200]}") from None
    model.pruning_history = [list(h) for h in history]
    return model


# -- counts -----------------------------------------------------------------------------------
def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def multiply_adds(model: nn.Module, image_size: int | tuple[int, int]) -> int:
    """Multiply-adds of one forward pass at batch 1 on an image of ``image_size`` (one number for a
    square or ``(height, width)``), counted by torch's own
    ``torch.utils.flop_counter.FlopCounterMode`` (it counts 2 FLOPs per multiply-add of the
    convolutions and matrix products; element-wise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *size_hw(image_size))  # (1, 3, H, W)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
