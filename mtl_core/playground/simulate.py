"""Every chosen method's path on a toy problem, from every starting point, stepped together.

The methods are the weighting registry's own classes, as a run builds them, on a two-parameter
"model" ``(x, y)``; the optimiser is torch's Adam or SGD, as in training. Two ways to step, both
the training code:

- a method whose class has a batched form (``batched``, see :mod:`mtl_core.weighting.base`; every
  registered method has one) steps every starting point of every such method at once: one
  evaluation of the problem gives every task's loss and gradient at every point, then, per method,
  its ``prepare`` on each task's losses of all its points, and one ``combine_grads_batch`` (or
  ``fuse_batch``) call; the chain rule through ``prepare`` and ``fuse`` is taken by autograd on the
  losses, and the task gradients give the rest. Its learnable parameters (UW's log-variances) get
  a row per starting point (:meth:`Weighting.per_problem`) and train in the same optimiser;
- a method without one gets an instance and a point per start, each stepped through
  :meth:`Weighting.combine`, its own forward and backward, exactly as the trainer.

Steps are computed in chunks (:meth:`Simulation.advance`) so a page can draw the paths as they grow.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.playground.problems import Point, Problem
from mtl_core.weighting import WEIGHTINGS, build_weighting
from mtl_core.weighting.base import StepContext, Weighting

OPTIMIZERS = ("adam", "sgd")
MAX_STEPS = 100_000  # the CAGrad paper ran 100,000
MAX_STARTS = 12


@dataclass
class Paths:
    """What a simulation computed so far (``N`` steps): numpy arrays, methods x starts x steps."""

    methods: list[str]
    tasks: tuple[str, ...]
    starts: np.ndarray  # (S, 2)
    positions: np.ndarray  # (M, S, N + 1, 2)
    losses: np.ndarray  # (M, S, N + 1, T), the scaled losses the methods saw
    weights: np.ndarray  # (M, S, N, T), each task's weight as the method reports it
    updates: np.ndarray  # (M, S, N, 2), the combined gradient the method handed the optimiser

    @property
    def steps(self) -> int:
        return self.positions.shape[2] - 1

    def ends(self) -> np.ndarray:
        return self.positions[:, :, -1]  # (M, S, 2)


@dataclass
class _Batched:
    """How one batched method steps: its instance, its rows of the shared leaf, and which path."""

    method: Weighting
    rows: slice  # its starts' rows in the leaf (B * S, 2)
    own: list[Tensor]  # its learnable parameters (a row per start)
    plain: bool  # its prepare is the base's and changes nothing here
    # "grads": combine_grads_batch on the task gradients; "fixed": weights times the task gradients;
    # "chain": through prepare and fuse by autograd on the losses
    path: str


def task_gradients(problem: Problem, points: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every task's (scaled) loss and gradient at ``points (N, 2)``: ``(N, T)`` and ``(N, T, 2)``."""
    values, grads = problem.values_and_grads(points)
    return values * scales, grads * scales[:, None]


def uses_batched_form(method: Weighting) -> bool:
    """Whether the playground may step ``method`` on every starting point at once."""
    return bool(method.batched)


def _optimizer(name: str, params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr) if name == "adam" else torch.optim.SGD(params, lr=lr)


class Simulation:
    """``methods`` from ``starts`` on ``problem``; :meth:`advance` computes more steps, :meth:`paths` reads them.

    ``scales`` multiply each task's loss (what UW and IMTL-L are meant to undo); ``params`` gives
    a method's parameters by name (``{"cagrad": {"c": 0.5}}``)."""

    def __init__(self, problem: Problem, methods: Sequence[str], starts: Sequence[Point] | None = None,
                 lr: float | None = None, steps: int | None = None, optimizer: str | None = None,
                 scales: Sequence[float] | None = None, params: Mapping[str, Mapping[str, float]] | None = None) -> None:
        self.problem = problem
        self.methods = list(dict.fromkeys(methods))
        if not self.methods:
            raise ConfigError("playground.methods", "choose at least one weighting method")
        for name in self.methods:
            WEIGHTINGS.get(name, "playground.methods")
        self.starts = np.asarray(starts if starts is not None else problem.default_starts, dtype=np.float64)
        if self.starts.ndim != 2 or self.starts.shape[1] != 2 or not 1 <= len(self.starts) <= MAX_STARTS:
            raise ConfigError("playground.starts", f"give 1 to {MAX_STARTS} starting points (x, y)")
        self.lr = float(problem.lr if lr is None else lr)
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise ConfigError("playground.lr", f"{lr} is not a step size; use a positive number such as 0.05")
        self.total = int(problem.steps if steps is None else steps)
        if not 1 <= self.total <= MAX_STEPS:
            raise ConfigError("playground.steps", f"{steps} steps: use 1 to {MAX_STEPS}")
        self.optimizer = optimizer or problem.optimizer
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("playground.optimizer", f"{optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        t = len(problem.tasks)
        self.scales = torch.tensor(list(scales) if scales is not None else [1.0] * t, dtype=torch.float64)
        if self.scales.shape != (t,) or not bool((self.scales > 0).all()):
            raise ConfigError("playground.scales", f"give {t} positive loss scales, one per task")
        tasks = list(problem.tasks)
        params = params or {}
        built = {n: build_weighting(n, tasks, params=dict(params.get(n, {}))) for n in self.methods}
        self.batched = [n for n in self.methods if uses_batched_form(built[n])]
        self.looped = [n for n in self.methods if n not in self.batched]
        s = len(self.starts)
        start = torch.as_tensor(self.starts)
        self.instances = {n: built[n].per_problem(s).double() for n in self.batched}
        # the batched methods' points: one leaf (B * S, 2), rows method-major, whose gradients come
        # from one evaluation of the problem a step; Adam and SGD act element-wise, so one optimiser
        # over it is an optimiser per point. The methods' own learnable parameters (a row per
        # point) train in the same optimiser, as in the trainer's.
        self.x = start.repeat(len(self.batched), 1).clone().requires_grad_(True)
        self.plans = [self._plan(self.instances[n], slice(b * s, (b + 1) * s)) for b, n in enumerate(self.batched)]
        self.chained = [plan for plan in self.plans if plan.path == "chain"]  # only these have own parameters
        self.chained_own = [p for plan in self.chained for p in plan.own]
        self.opt = _optimizer(self.optimizer, [self.x, *self.chained_own], self.lr) if self.batched else None
        # the others: one method and point per start, as separate runs
        self.runs: dict[str, list[tuple[Weighting, Tensor, torch.optim.Optimizer]]] = {}
        for n in self.looped:
            runs = []
            for i in range(s):
                method = (built[n] if i == 0 else build_weighting(n, tasks, params=dict(params.get(n, {})))).double()
                point = start[i].clone().requires_grad_(True)
                own = [p for p in method.parameters() if p.requires_grad]
                runs.append((method, point, _optimizer(self.optimizer, [point, *own], self.lr)))
            self.runs[n] = runs
        m = len(self.methods)
        self.scales_np = self.scales.numpy()
        self.index = {name: k for k, name in enumerate(self.methods)}
        self.rows = [self.index[n] for n in self.batched]
        self._pos = [np.broadcast_to(self.starts, (m, s, 2)).copy()]  # one (M, S, 2) per step
        self._loss: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._updates: list[np.ndarray] = []
        self.done = 0

    # -- stepping -------------------------------------------------------------------------------

    def advance(self, n: int) -> int:
        """Compute up to ``n`` more steps (never past ``steps``); returns the steps done so far."""
        for _ in range(min(n, self.total - self.done)):
            self._step()
        return self.done

    def run(self) -> Paths:
        self.advance(self.total)
        return self.paths()

    def _step(self) -> None:
        step, m, s, t = self.done, len(self.methods), len(self.starts), len(self.problem.tasks)
        pos, loss = np.empty((m, s, 2)), np.empty((m, s, t))
        weights, updates = np.empty((m, s, t)), np.empty((m, s, 2))
        if self.batched:
            self.opt.zero_grad()
            values, grads = task_gradients(self.problem, self.x.detach().numpy(), self.scales_np)  # (B*S, T, ...)
            got = self._batched_updates(torch.from_numpy(values), torch.from_numpy(grads), step)
            for name, plan, (d, w) in zip(self.batched, self.plans, got):
                k = self.index[name]
                loss[k], weights[k], updates[k] = values[plan.rows], w, d.numpy()
            self.x.grad = torch.cat([d for d, _ in got])
            self.opt.step()
            pos[self.rows] = self.x.detach().numpy().reshape(len(self.batched), s, 2)
        for name, runs in self.runs.items():
            k = self.index[name]
            for i, (method, point, opt) in enumerate(runs):
                opt.zero_grad()
                values = self.problem.losses(point[None])[0] * self.scales  # (T,)
                reported = method.combine({task: values[j] for j, task in enumerate(self.problem.tasks)}, [point],
                                          StepContext(step=step))
                loss[k, i] = values.detach().numpy()
                weights[k, i] = [reported[task] for task in self.problem.tasks]
                updates[k, i] = point.grad.detach().numpy() if point.grad is not None else 0.0
                opt.step()
                pos[k, i] = point.detach().numpy()
        self._pos.append(pos)
        self._loss.append(loss)
        self._weights.append(weights)
        self._updates.append(updates)
        self.done += 1

    @staticmethod
    def _plan(method: Weighting, rows: slice) -> _Batched:
        own = [p for p in method.parameters() if p.requires_grad]
        plain = type(method).prepare is Weighting.prepare and (  # the base prepare, and a no-op here
            method.uses_weights != "multiplier" or set(method.user_weights.values()) <= {1.0})
        path = "chain"
        if plain and not own:
            if method.kind == "gradient":
                path = "grads"
            elif method.fixed_weights:  # a weighted sum with weights that ignore the losses: no chain rule needed
                path = "fixed"
        return _Batched(method, rows, own, plain, path)

    def _batched_updates(self, values: Tensor, grads: Tensor, step: int) -> list[tuple[Tensor, np.ndarray]]:
        """Every batched method's updates ``(S, 2)`` and reported weights ``(S, T)``, each start's as
        :meth:`Weighting.combine` runs the one-problem hook on a model whose per-task gradients are
        ``grads (B*S, T, 2)`` at losses ``values (B*S, T)``; the methods' own learnable parameters
        get their gradients (left for the shared optimiser). The chain rule through ``prepare`` and
        ``fuse`` is one backward for every method that needs it: their rows of the losses and their
        parameters are their own, so one sum's gradient holds each method's."""
        tasks, own = self.problem.tasks, self.chained_own
        staged: dict[int, tuple[Tensor, Tensor | None, dict | None]] = {}  # prepared, loss weights, factor
        outputs = []
        leaf = values.detach().clone().requires_grad_(True) if self.chained else values  # (B*S, T)
        for plan in self.chained:
            method, mine = plan.method, leaf[plan.rows]
            factor = None
            if plan.plain:
                prepared = mine
            else:  # task by task: each task's losses at every start
                got, factor = method.prepare({task: mine[:, j] for j, task in enumerate(tasks)}, StepContext(step=step))
                prepared = torch.stack([got[task] for task in tasks], dim=1)  # (S, T)
            w = None
            if method.kind == "gradient":  # its task gradients are those of the prepared losses
                outputs.append(prepared.sum())  # each prepared loss back-propagated once, as per_task_grads does
            else:
                extra = (grads[plan.rows],) if method.fuse_reads_params else ()
                totals, w = method.fuse_batch(prepared, step, *extra)
                outputs.append(totals.sum())
            staged[id(plan)] = (prepared.detach(), w, factor)
        dleaf = None
        if outputs:
            got = torch.autograd.grad(torch.stack(outputs).sum(), [leaf, *own], allow_unused=True)
            dleaf = got[0] if got[0] is not None else torch.zeros_like(leaf)
            for p, g in zip(own, got[1:]):
                p.grad = g
        out = []
        for plan in self.plans:
            method, g, v = plan.method, grads[plan.rows], values[plan.rows]
            if plan.path == "grads":
                d, w = method.combine_grads_batch(g, v, step)
                out.append((d, w.double().numpy()))
                continue
            if plan.path == "fixed":
                _, w = method.fuse_batch(v, step)
                out.append((torch.bmm(w[:, None, :].to(g), g)[:, 0], w.double().numpy()))
                continue
            prepared, w, factor = staged[id(plan)]
            scale = dleaf[plan.rows]  # d P_t / d L_t (prepare acts task by task), or d total / d L_t
            if method.kind == "gradient":
                d, w = method.combine_grads_batch(scale[:, :, None] * g if not plan.plain else g, prepared, step)
            else:
                d = torch.bmm(scale[:, None, :], g)[:, 0]  # d total / d x = sum_t (d total / d L_t) g_t
            w = w.detach().double().numpy()
            if factor:  # each task's factor: a number, or one per start
                w = w * np.stack([np.broadcast_to(np.asarray(factor.get(t, 1.0), dtype=np.float64), w.shape[:1])
                                  for t in tasks], axis=1)
            out.append((d.detach(), w))
        return out

    # -- reading --------------------------------------------------------------------------------

    def paths(self) -> Paths:
        pos = np.stack(self._pos, axis=2)  # (M, S, N + 1, 2)
        m, s, t = len(self.methods), len(self.starts), len(self.problem.tasks)
        last, _ = task_gradients(self.problem, pos[:, :, -1].reshape(-1, 2), self.scales_np)
        if self.done:
            losses = np.concatenate([np.stack(self._loss, axis=2), last.reshape(m, s, 1, t)], axis=2)
            weights, updates = np.stack(self._weights, axis=2), np.stack(self._updates, axis=2)
        else:
            losses = last.reshape(m, s, 1, t)
            weights, updates = np.zeros((m, s, 0, t)), np.zeros((m, s, 0, 2))
        return Paths(self.methods, self.problem.tasks, self.starts.copy(), pos, losses, weights, updates)
