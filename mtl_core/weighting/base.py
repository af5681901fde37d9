"""The weighting protocol: how per-task losses become one update.

A method is an ``nn.Module``. The trainer calls one public method each step::

    weights = method.combine(losses, shared_params, StepContext(step, loss_scale, reduce, rep))

``losses`` is one batch's per-task losses, or an iterable of them, one per batch
(``batches_per_step`` of them, in draw order). ``combine`` leaves ``.grad`` set on every parameter
and returns the effective per-task weights it used, so the UI can plot them. Everything the
trainer knows at a step (the step, fp16's loss scale, multi-process averaging, the shared
representation) is in the frozen :class:`StepContext`, an argument: nothing is set on a method
from outside. A method never hard-codes a device.

A method implements one hook, its family's; the family's base does the rest:

- :class:`LossWeighting`: ``fuse(losses, step, shared_params) -> (total, weights)`` on the ``(T,)``
  losses; the base back-propagates ``total``.
- :class:`GradWeighting`: ``combine_grads(grads, losses, step) -> (grad, weights)`` on a ``(T, D)``
  matrix of per-task gradients; the base computes them (on the shared parameters, or on the shared
  representation when ``rep_grad``) and writes the result back. A gradient method whose gradients
  are those of something other than its losses (DB-MTL's log-losses, IMTL's scaled losses)
  also refines ``prepare``.
- :class:`MultiBatchWeighting`: ``combine_multi(grads, losses, step)`` on one ``(T, D)`` matrix per
  batch, for a method that needs several independent batches a step (``batches_per_step``; double
  sampling makes products of gradients unbiased).

State is the module's, so ``state_dict``, ``load_state_dict``, ``to`` and ``parameters`` are
``nn.Module``'s and never written per method:

- learnable tensors are ``nn.Parameter``s. Those that require grad are trained by the trainer's
  optimiser with the model (UW's log-variances); a method that steps its own with an optimiser
  of its own (GradNorm, FAMO) makes them ``requires_grad=False``, and the trainer leaves them alone;
- tensors on the gradients' device are buffers, registered as ``None`` until their shape is known
  (DB-MTL's moving average); loading takes the saved tensor whatever its shape;
- host-side state, which ``to()`` leaves where it is (lists, counters, the float64 CPU state of the
  solvers, a ``torch.Generator``, an optimiser of the method's own) is named in ``state_attrs``
  (each class lists its own; the person's task weights are the base's) and saved, as copies, by
  ``get_extra_state``.

A checkpoint written before methods were modules (a flat dict each method wrote by hand) still loads.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError
from mtl_core.models.base import SharedRep
from mtl_core.registry import Registry
from mtl_core.weights import TaskWeights

WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting method")
register_weighting = WEIGHTINGS.register

Losses = Mapping[str, Tensor]


@dataclass(frozen=True)
class StepContext:
    """What the trainer knows at a step, passed to :meth:`Weighting.combine`.

    ``loss_scale``: fp16 training's loss scale (``torch.amp.GradScaler``). Methods always see the
    true losses (several take their logs or ratios); only what is back-propagated is multiplied by
    it, so the gradients left on the parameters are ``loss_scale`` times the true ones, as the
    scaler's ``unscale_`` expects. ``reduce`` (multi-process training) averages a tensor across
    processes; gradient methods apply it to the per-task gradients before combining them. ``rep``:
    the step's shared representation when the method works on it (``rep_grad``; one batch a step).
    """

    step: int = 0
    loss_scale: float = 1.0
    reduce: Callable[[Tensor], Tensor] | None = None
    rep: SharedRep | None = None


# keys of the flat dicts methods wrote before they were modules, where the attribute is now named otherwise
_LEGACY_NAMES = {"sum": "_sum", "count": "_count", "history": "_history", "lambda": "lam", "start": "_start"}


class Weighting(nn.Module):
    """Base of every method. Subclasses set ``kind``, ``defaults`` and ``citation``."""

    name: str = ""
    kind: str = "loss"  # "loss" or "gradient"
    supports_params: bool = True
    supports_rep: bool = False
    defaults: dict[str, float] = {}
    citation: str = ""
    # Whether, and as what, the method uses the task weights a person sets (Setup's sliders, a
    # retune on the Live page): "weights", they are the weights; "multiplier", each task's loss is
    # multiplied by its weight before the method balances them (the reported weight is the
    # product); "preference", the method's own preference vector (normalised to sum to 1); "" not
    # at all, and ``weights_note`` says why, so the dashboard can tell a person.
    uses_weights: str = ""
    weights_note: str = ""
    # How many batches one update uses; the trainer draws that many consecutive batches of the
    # run's data order (so a seed and a resumed run give the same ones).
    batches_per_step: int = 1
    # Host-side state saved by ``get_extra_state`` (see the module docstring); a class lists its own
    # attributes only, those of its bases are collected along the MRO.
    state_attrs: tuple[str, ...] = ("user_weights",)
    # Whether the family's batched hook (``combine_grads_batch``, ``fuse_batch``) is implemented:
    # many independent problems of the same tasks at once, each as its own call would treat it.
    # Only the gradient playground uses it (every starting point of a toy stepped together); a
    # contract test holds it to the one-problem hook on the same inputs. A batched method's own
    # ``prepare`` acts task by task, so it takes a task's losses of every problem as one ``(S,)``
    # tensor; its learnable parameters get a row per problem from :meth:`per_problem`.
    batched: bool = False
    # A loss method whose ``fuse_batch`` totals are its weights times the losses, with weights that
    # do not depend on the losses (EW, static): its update is the weights times the task gradients.
    fixed_weights: bool = False
    # Whether ``fuse`` reads the shared parameters themselves (GradNorm's gradient norms on the last
    # shared layer), so it needs the model's graph, not only the losses.
    fuse_reads_params: bool = False

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
        super().__init__()
        self.tasks = list(tasks)
        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise ConfigError(f"weighting.params.{sorted(unknown)[0]}",
                              f"{self.name} has no such parameter; its parameters: {allowed}")
        self.params = {**self.defaults, **(params or {})}
        if rep_grad and not self.supports_rep:
            raise ConfigError("weighting.rep_grad", f"{self.name} cannot work on the shared representation; "
                              "turn rep_grad off to use the shared parameters")
        if not rep_grad and not self.supports_params:
            raise ConfigError("weighting.rep_grad", f"{self.name} works only on the shared representation; turn rep_grad on")
        self.rep_grad = rep_grad
        self.user_weights = {t: 1.0 for t in self.tasks}
        if weights:
            self.set_user_weights(weights)

    def per_problem(self, s: int) -> Weighting:
        """This method made ready for ``s`` independent problems (the batched hooks): each of its
        learnable parameters gets a leading dimension of ``s``, a copy per problem, that its hooks
        read row by row (UW's log-variances become ``(S, T)``); an optimiser over them is then an
        optimiser per problem (Adam and SGD act element-wise). Returns ``self``."""
        for name, p in list(self.named_parameters(recurse=False)):
            if p.requires_grad:
                setattr(self, name, nn.Parameter(p.detach().expand(s, *p.shape).clone()))
        return self

    def set_user_weights(self, weights: dict[str, float]) -> None:
        """Weights set by a person (used as ``uses_weights`` says; ignored when it is empty)."""
        for t, w in weights.items():
            if t in self.user_weights:
                self.user_weights[t] = float(w)

    # -- the step ---------------------------------------------------------------------------

    def combine(self, losses: Losses | Iterable[Losses], shared_params: list[Tensor],
                ctx: StepContext) -> dict[str, float]:
        """This step's update: ``.grad`` set on every parameter; returns each task's effective weight.

        ``losses``: one batch's per-task losses, or an iterable of ``batches_per_step`` of them in
        draw order (the trainer passes a generator: a batch's forward runs when the method takes
        it, after the previous batch's backward freed its graph). A multi-batch method given one
        batch uses it in every role (its single-sample version)."""
        if not isinstance(ctx, StepContext):
            raise TypeError(f"combine takes a StepContext, not {type(ctx).__name__}: "
                            "combine(losses, shared_params, StepContext(step=...))")
        if isinstance(losses, Mapping):
            return self._combine(iter([losses]), shared_params, ctx, 1)
        return self._combine(iter(losses), shared_params, ctx, self.batches_per_step)

    def _combine(self, batches: Iterator[Losses], shared_params: list[Tensor], ctx: StepContext,
                 n: int) -> dict[str, float]:
        raise NotImplementedError  # each family's base

    def prepare(self, losses: Losses, ctx: StepContext) -> tuple[dict[str, Tensor], dict[str, float] | None]:
        """The per-task objectives the method balances, and the factor of each task's reported
        weight (``None``: 1): by default, for a "multiplier" method, each loss times the person's
        weight, and those weights; else the losses as they are."""
        if self.uses_weights != "multiplier":
            return dict(losses), None
        return {t: v * self.user_weights[t] for t, v in losses.items()}, dict(self.user_weights)

    def _one(self, batches: Iterator[Losses]) -> Losses:
        """The single batch of a one-batch method."""
        got = list(batches)
        if len(got) != 1:
            raise ValueError(f"{self.name} combines 1 batch a step; it was given {len(got)}")
        return got[0]

    def _stack(self, losses: Losses) -> Tensor:
        return torch.stack([losses[t] for t in self.tasks])  # (T,)

    def preference(self) -> Tensor:
        """The person's weights as a preference vector ``(T,)`` summing to 1 (equal by default)."""
        weights = TaskWeights(tuple(self.tasks), tuple(float(self.user_weights[t]) for t in self.tasks))
        return torch.tensor(weights.normalised(), dtype=torch.float64)  # the one normalisation rule

    def _report(self, weights: Tensor | Sequence[float], factor: dict[str, float] | None) -> dict[str, float]:
        """The effective weight of each task's (true) loss in this step's update."""
        w = weights.detach().float().cpu().tolist() if isinstance(weights, Tensor) else list(weights)
        f = factor or {}
        return {t: float(x) * f.get(t, 1.0) for t, x in zip(self.tasks, w)}

    # -- state --------------------------------------------------------------------------------

    def _state_names(self) -> list[str]:
        names: list[str] = []
        for cls in reversed(type(self).__mro__):
            names += [n for n in vars(cls).get("state_attrs", ()) if n not in names]
        return names

    def get_extra_state(self) -> dict[str, Any]:
        """The host-side state named in ``state_attrs``, copied (lists and tensors change in place)."""
        state = {}
        for name in self._state_names():
            value = getattr(self, name)
            if isinstance(value, torch.Generator):
                value = value.get_state()
            elif isinstance(value, torch.optim.Optimizer):
                value = value.state_dict()
            state[name] = value
        return copy.deepcopy(state)

    def set_extra_state(self, state: dict[str, Any]) -> None:
        state = copy.deepcopy(state)  # the method's own copy: loading one dict twice shares nothing
        names = self._state_names()
        for name, value in state.items():
            if name not in names:
                raise ValueError(f"the saved state of {self.name} holds {name!r}, which it does not keep; "
                                 f"its state: {', '.join(names)}")
            current = getattr(self, name)
            if isinstance(current, torch.Generator):
                current.set_state(value.cpu())
            elif isinstance(current, torch.optim.Optimizer):
                current.load_state_dict(value)  # casts its moments to its parameters' device
            else:
                setattr(self, name, value.cpu() if isinstance(value, Tensor) else value)  # host side

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        if prefix + "_extra_state" not in state_dict:
            self._upgrade_legacy(state_dict, prefix)
        # a buffer is None until the gradients give its shape: take the saved one as it is (and
        # None where none was saved) rather than copying into one of the shape this one has now
        for name, current in self._buffers.items():
            saved = state_dict.get(prefix + name)
            device = current.device if current is not None else None
            self._buffers[name] = None if saved is None else saved.detach().to(device, copy=True)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _upgrade_legacy(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Rewrite, in place, a flat dict of the format before methods were modules into this one."""
        old = {k[len(prefix):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
        extra = {}
        for key, value in old.items():
            name = _LEGACY_NAMES.get(key, key)
            if value is None:  # not set yet when saved
                continue
            if name in self._parameters or name in self._buffers:
                state_dict[prefix + name] = torch.as_tensor(value)
                continue
            current = getattr(self, name, None)
            if isinstance(value, list) and (isinstance(current, Tensor) or current is None):
                value = torch.tensor(value, dtype=torch.float64)  # float64 state was saved as lists
            elif isinstance(current, Tensor):
                value = torch.as_tensor(value, dtype=current.dtype)
            extra[name] = value
        state_dict[prefix + "_extra_state"] = extra

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        for name in self._state_names():  # an optimiser of the method's own: its moments follow its parameters
            value = getattr(self, name)
            if isinstance(value, torch.optim.Optimizer):
                value.load_state_dict(value.state_dict())
        return self


def _scaled(x: Tensor, scale: float) -> Tensor:
    return x if scale == 1.0 else x * scale


def _unscaled(x: Tensor, scale: float) -> Tensor:
    return x if scale == 1.0 else x / scale


class LossWeighting(Weighting):
    kind = "loss"

    def fuse(self, losses: Tensor, step: int, shared_params: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``losses (T,)`` -> ``(total scalar, effective weights (T,))``."""
        raise NotImplementedError

    def fuse_batch(self, losses: Tensor, step: int, grads: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``losses (S, T)`` of ``S`` independent problems -> ``(totals (S,), weights (S, T))``, each row
        as :meth:`fuse` gives it (for a method whose ``batched`` is true). A method that reads the
        shared parameters (``fuse_reads_params``) is also given ``grads (S, T, D)``, each task's
        gradient on them (the playground's model is all shared: its last layer is all of it)."""
        raise NotImplementedError(f"{self.name} has no batched form")

    def _combine(self, batches, shared_params, ctx, n):
        losses, factor = self.prepare(self._one(batches), ctx)
        total, weights = self.fuse(self._stack(losses), ctx.step, shared_params)  # no loss method takes rep
        _scaled(total, ctx.loss_scale).backward()
        return self._report(weights, factor)


def per_task_grads(losses: Tensor | Sequence[Tensor], params: list[Tensor]) -> Tensor:
    """``(T, D)`` gradients of each loss on ``params`` (flattened); task-specific parameters
    reached by each loss get their own gradient accumulated as a side effect."""
    rows = []
    n = len(losses)
    for i, loss in enumerate(losses):
        loss.backward(retain_graph=i < n - 1)
        rows.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]))
        for p in params:
            p.grad = None
    return torch.stack(rows)


def write_grad(params: list[Tensor], flat: Tensor) -> None:
    """Set ``p.grad`` of each parameter from one flat vector."""
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p).to(p.dtype).clone()
        i += n


class GradWeighting(Weighting):
    kind = "gradient"
    supports_rep = True
    # on the shared representation, give ``combine_grads`` a row per sample, ``(T, B, C*h*w)``,
    # rather than ``(T, B*C*h*w)``, for a method that needs the batch's structure (ExcessMTL)
    rep_per_sample: bool = False

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """``grads (T, D)``, ``losses (T,)`` detached -> ``(combined grad (D,), weights (T,))``."""
        raise NotImplementedError

    def combine_grads_batch(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """``grads (S, T, D)``, ``losses (S, T)`` of ``S`` independent problems -> ``(S, D)``, ``(S, T)``,
        each row what :meth:`combine_grads` gives on it (for a method whose ``batched`` is true; one
        that draws random numbers draws them as ``S`` calls in a row would)."""
        raise NotImplementedError(f"{self.name} has no batched form")

    def _combine(self, batches, shared_params, ctx, n):
        losses, factor = self.prepare(self._one(batches), ctx)
        stacked = self._stack(losses)
        scale, rep = ctx.loss_scale, ctx.rep
        if rep is None and not shared_params:  # nothing shared (single-task baseline): plain sum
            _scaled(stacked.sum(), scale).backward()
            return self._report(torch.ones_like(stacked), factor)
        # per-task gradients of the scaled losses (fp16 needs the scale to keep them from
        # underflowing), divided back before combining: every method sees the true gradients
        if rep is not None:
            rows, shape = [], (rep.features.shape[0], -1) if self.rep_per_sample else (-1,)
            for t in self.tasks:
                _scaled(losses[t], scale).backward()  # graphs are separate: each stops at its detached copy
                g = rep.per_task[t].grad
                rows.append((g if g is not None else torch.zeros_like(rep.features)).reshape(shape))
            grads = _unscaled(torch.stack(rows).float(), scale)  # (T, B*C*h*w), or (T, B, C*h*w)
            g, weights = self.combine_grads(grads, stacked.detach().float(), ctx.step)
            rep.features.backward(_scaled(g, scale).view_as(rep.features).to(rep.features.dtype))
        else:
            grads = per_task_grads([_scaled(losses[t], scale) for t in self.tasks], shared_params)  # (T, D)
            if ctx.reduce is not None:
                grads = ctx.reduce(grads)  # the global batch's per-task gradients, the same on every rank
            g, weights = self.combine_grads(_unscaled(grads.float(), scale), stacked.detach().float(), ctx.step)
            write_grad(shared_params, _scaled(g, scale))
        return self._report(weights, factor)


class MultiBatchWeighting(GradWeighting):
    """A gradient method on several batches a step: ``combine_multi`` gets one ``(T, D)`` matrix
    of per-task gradients on the shared parameters (and ``(T,)`` losses) per batch, in draw order.

    Task-specific parameters (the heads) get the mean of their gradients over the batches: each
    loss is back-propagated times ``loss_scale / n`` (fp16's scale as in :class:`GradWeighting`)
    and the per-task gradients divided back. Given a single batch (``combine`` on one batch's
    losses, or ``combine_grads``: callers of the one-batch protocol, a tool or a test), that batch
    plays every role: the method's single-sample version. Not on the shared representation: its
    gradient is per sample and the batches hold different samples, so a product of two batches'
    gradients would pair unrelated images."""

    supports_rep = False
    batches_per_step = 2

    def combine_multi(self, grads: list[Tensor], losses: list[Tensor], step: int) -> tuple[Tensor, Tensor]:
        """One ``grads (T, D)`` and ``losses (T,)`` (detached) per batch -> ``(grad (D,), weights (T,))``."""
        raise NotImplementedError

    def combine_grads(self, grads, losses, step):
        return self.combine_multi([grads] * self.batches_per_step, [losses] * self.batches_per_step, step)

    def _combine(self, batches, shared_params, ctx, n):
        scale = ctx.loss_scale / n
        grads, values, factor = [], [], None
        for losses in batches:
            losses, factor = self.prepare(losses, ctx)
            values.append(self._stack(losses).detach().float())  # (T,)
            if not shared_params:  # nothing shared (single-task baseline): plain sum
                (self._stack(losses).sum() * scale).backward()
                continue
            g = per_task_grads([losses[t] * scale for t in self.tasks], shared_params)  # (T, D)
            if ctx.reduce is not None:
                g = ctx.reduce(g)  # the global batch's per-task gradients, the same on every rank
            grads.append(g.float() / scale)
        if len(values) != n:
            raise ValueError(f"{self.name} combines {n} batch(es) a step; it was given {len(values)}")
        if not shared_params:
            return self._report(torch.ones(len(self.tasks)), factor)
        k = self.batches_per_step // n  # one batch: every role
        g, weights = self.combine_multi(grads * k, values * k, ctx.step)
        write_grad(shared_params, _scaled(g, ctx.loss_scale))
        return self._report(weights, factor)
