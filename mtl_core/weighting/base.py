"""The weighting protocol: how per-task losses become one update.

A method receives the per-task losses (and, if it needs them, per-task gradients on the
shared parameters or on the shared representation) and leaves ``.grad`` set on every
parameter: ``combine(losses, shared_params, step, rep=None) -> weights``. It keeps its own
state (passed explicitly, never read from the trainer), never hard-codes a device, and
returns the effective per-task weights it used so the UI can plot them.

Two bases cover the two families:

- :class:`LossWeighting`: implement ``fuse(losses, step, shared_params) -> (total, weights)``;
  the base back-propagates ``total`` (times ``loss_scale`` under fp16, see below).
- :class:`GradWeighting`: implement ``combine_grads(grads, losses, step) -> (grad, weights)`` on
  a ``(T, D)`` matrix of per-task gradients; the base computes the gradients (on the shared
  parameters, or on the shared representation when ``rep_grad``) and writes the result back.
- :class:`MultiBatchWeighting`: a gradient method that needs several independent batches a step
  (``batches_per_step``; double sampling makes products of gradients unbiased). Implement
  ``combine_multi(grads, losses, step)`` on one ``(T, D)`` matrix per batch; the trainer gives
  the batches through ``combine_batches``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError
from mtl_core.models.base import SharedRep
from mtl_core.registry import Registry

WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting method")
register_weighting = WEIGHTINGS.register


class Weighting:
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

    def __init__(self, tasks: Sequence[str], params: dict[str, float] | None = None,
                 weights: dict[str, float] | None = None, rep_grad: bool = False) -> None:
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

    def set_user_weights(self, weights: dict[str, float]) -> None:
        """Weights set by a person (used as ``uses_weights`` says; ignored when it is empty)."""
        for t, w in weights.items():
            if t in self.user_weights:
                self.user_weights[t] = float(w)

    def parameters(self) -> list[nn.Parameter]:
        """Learnable parameters (e.g. UW's log-variances), optimised with the model."""
        return []

    def to(self, device: torch.device | str) -> Weighting:
        return self

    def combine(self, losses: dict[str, Tensor], shared_params: list[Tensor], step: int,
                rep: SharedRep | None = None, reduce=None) -> dict[str, float]:
        """``reduce`` (multi-process training) averages a tensor across processes; gradient methods
        apply it to the per-task gradients before combining them."""
        raise NotImplementedError

    # How many batches one update uses. A method that needs more sets it and implements
    # ``combine_batches``, which the trainer then calls instead of ``combine``, with that many
    # consecutive batches of the run's data order (so a seed and a resumed run give the same ones).
    batches_per_step: int = 1

    def combine_batches(self, batches: Iterable[dict[str, Tensor]], shared_params: list[Tensor], step: int,
                        reduce=None) -> dict[str, float]:
        """``batches``: the per-task losses of each of this step's ``batches_per_step`` batches, in
        draw order. The trainer passes an iterator: a batch's forward runs when the method takes it,
        so the previous batch's graph is freed (by its backward) first."""
        raise NotImplementedError

    # fp16 training's loss scale (``torch.amp.GradScaler``): methods always see the true losses
    # (several take their logs or ratios); only what is back-propagated is multiplied by it, so
    # the gradients left on the parameters are ``loss_scale`` times the true ones, as the
    # scaler's ``unscale_`` expects. 1 otherwise.
    loss_scale: float = 1.0

    def _scaled(self, x: Tensor) -> Tensor:
        return x if self.loss_scale == 1.0 else x * self.loss_scale

    def _unscaled(self, x: Tensor) -> Tensor:
        return x if self.loss_scale == 1.0 else x / self.loss_scale

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"user_weights": dict(self.user_weights)}
        generator = getattr(self, "generator", None)  # methods that draw random numbers own one
        if generator is not None:
            state["generator"] = generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.user_weights.update(state.get("user_weights", {}))
        generator = getattr(self, "generator", None)
        if generator is not None and "generator" in state:
            generator.set_state(torch.as_tensor(state["generator"]).cpu())

    def _stack(self, losses: dict[str, Tensor]) -> Tensor:
        return torch.stack([losses[t] for t in self.tasks])  # (T,)

    def _multiplied(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """The losses the method balances: times the person's weights for a "multiplier" method."""
        if self.uses_weights != "multiplier":
            return losses
        return {t: v * self.user_weights[t] for t, v in losses.items()}

    def preference(self) -> Tensor:
        """The person's weights as a preference vector ``(T,)`` summing to 1 (equal by default)."""
        p = torch.tensor([self.user_weights[t] for t in self.tasks], dtype=torch.float64)
        return p / p.sum() if float(p.sum()) > 0 else torch.full_like(p, 1.0 / len(self.tasks))

    def _report(self, weights: Tensor | Sequence[float]) -> dict[str, float]:
        """The effective weight of each task's (true) loss in this step's update."""
        w = weights.detach().float().cpu().tolist() if isinstance(weights, Tensor) else list(weights)
        m = self.user_weights if self.uses_weights == "multiplier" else {}
        return {t: float(x) * m.get(t, 1.0) for t, x in zip(self.tasks, w)}


class LossWeighting(Weighting):
    kind = "loss"

    def fuse(self, losses: Tensor, step: int, shared_params: list[Tensor]) -> tuple[Tensor, Tensor]:
        """``losses (T,)`` -> ``(total scalar, effective weights (T,))``."""
        raise NotImplementedError

    def combine(self, losses, shared_params, step, rep=None, reduce=None):
        losses = self._multiplied(losses)
        total, weights = self.fuse(self._stack(losses), step, shared_params)  # rep is None: no loss method supports it
        self._scaled(total).backward()
        return self._report(weights)


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

    def combine_grads(self, grads: Tensor, losses: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """``grads (T, D)``, ``losses (T,)`` detached -> ``(combined grad (D,), weights (T,))``."""
        raise NotImplementedError

    def combine(self, losses, shared_params, step, rep=None, reduce=None):
        losses = self._multiplied(losses)
        stacked = self._stack(losses)
        if rep is None and not shared_params:  # nothing shared (single-task baseline): plain sum
            self._scaled(stacked.sum()).backward()
            return self._report(torch.ones_like(stacked))
        # per-task gradients of the scaled losses (fp16 needs the scale to keep them from
        # underflowing), divided back before combining: every method sees the true gradients
        if rep is not None:
            rows = []
            for t in self.tasks:
                self._scaled(losses[t]).backward()  # graphs are separate: each stops at its detached copy
                g = rep.per_task[t].grad
                rows.append((g if g is not None else torch.zeros_like(rep.features)).reshape(-1))
            grads = self._unscaled(torch.stack(rows).float())  # (T, B*C*h*w)
            g, weights = self.combine_grads(grads, stacked.detach().float(), step)
            rep.features.backward(self._scaled(g).view_as(rep.features).to(rep.features.dtype))
        else:
            grads = per_task_grads([self._scaled(losses[t]) for t in self.tasks], shared_params)  # (T, D)
            if reduce is not None:
                grads = reduce(grads)  # the global batch's per-task gradients, the same on every rank
            g, weights = self.combine_grads(self._unscaled(grads.float()), stacked.detach().float(), step)
            write_grad(shared_params, self._scaled(g))
        return self._report(weights)


class MultiBatchWeighting(GradWeighting):
    """A gradient method on several batches a step: ``combine_multi`` gets one ``(T, D)`` matrix
    of per-task gradients on the shared parameters (and ``(T,)`` losses) per batch, in draw order.

    Task-specific parameters (the heads) get the mean of their gradients over the batches: each
    loss is back-propagated times ``loss_scale / n`` (fp16's scale as in :class:`GradWeighting`)
    and the per-task gradients divided back. Given a single batch (``combine``, ``combine_grads``:
    callers of the one-batch protocol, a tool or a test), that batch plays every role: the method's
    single-sample version. Not on the shared representation: its gradient is per sample and the
    batches hold different samples, so a product of two batches' gradients would pair unrelated
    images."""

    supports_rep = False
    batches_per_step = 2

    def combine_multi(self, grads: list[Tensor], losses: list[Tensor], step: int) -> tuple[Tensor, Tensor]:
        """One ``grads (T, D)`` and ``losses (T,)`` (detached) per batch -> ``(grad (D,), weights (T,))``."""
        raise NotImplementedError

    def combine_grads(self, grads, losses, step):
        return self.combine_multi([grads] * self.batches_per_step, [losses] * self.batches_per_step, step)

    def combine(self, losses, shared_params, step, rep=None, reduce=None):
        return self._combine([losses], shared_params, step, reduce, 1)

    def combine_batches(self, batches, shared_params, step, reduce=None):
        return self._combine(batches, shared_params, step, reduce, self.batches_per_step)

    def _combine(self, batches: Iterable[dict[str, Tensor]], shared_params: list[Tensor], step: int, reduce,
                 n: int) -> dict[str, float]:
        scale = self.loss_scale / n
        grads, values = [], []
        for losses in batches:
            losses = self._multiplied(losses)
            values.append(self._stack(losses).detach().float())  # (T,)
            if not shared_params:  # nothing shared (single-task baseline): plain sum
                (self._stack(losses).sum() * scale).backward()
                continue
            g = per_task_grads([losses[t] * scale for t in self.tasks], shared_params)  # (T, D)
            if reduce is not None:
                g = reduce(g)  # the global batch's per-task gradients, the same on every rank
            grads.append(g.float() / scale)
        if len(values) != n:
            raise ValueError(f"{self.name} combines {n} batch(es) a step; it was given {len(values)}")
        if not shared_params:
            return self._report(torch.ones(len(self.tasks)))
        k = self.batches_per_step // n  # one batch: every role
        g, weights = self.combine_multi(grads * k, values * k, step)
        write_grad(shared_params, self._scaled(g))
        return self._report(weights)
