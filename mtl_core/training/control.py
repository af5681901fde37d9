"""How a running trainer is steered: pause, resume, stop and new task weights.

Every run obeys one control path, the run store: a page, the CLI or a test sends a command
(:meth:`~mtl_core.store.store.RunStore.send_command`) and the trainer of that run, wherever it
trains (a dashboard thread, ``python -m mtl_core train``, a ``torchrun`` job), reads it at its
next step. Under torchrun rank 0 alone reads the store and decides; its decision (and every other
decision that ends or changes training: the time limit, the clock-driven learning rate) is
broadcast so that every rank applies it at the same step.

:class:`Control` holds what the trainer's own process asks of it (Ctrl+C, a manager shutting
down): it can only stop.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mtl_core.errors import ConfigError, TrainingFailed
from mtl_core.training import distributed
from mtl_core.weights import check_weights


class Control:
    """Thread-safe stop requests from the trainer's own process."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop request; True when one came."""
        return self._stop.wait(seconds)


@dataclass
class Decision:
    """What every rank does at one step."""

    stop: bool = False
    paused: bool = False
    time_up: bool = False
    time_fraction: float = 0.0  # of the time limit spent (the learning rate's cosine follows it)
    weights: dict[str, float] | None = None  # new user weights to apply now (all of them, merged)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (event kind, payload) rank 0 records


class Steering:
    """Turns the run's pending commands, its local stop requests and the clock into one
    :class:`Decision` per step, the same on every rank."""

    def __init__(self, store: Any, run_id: str, tasks: Sequence[str], method: Any, control: Control,
                 dist: distributed.DistInfo, device: torch.device, time_limit: float = 0.0) -> None:
        self.store, self.run_id, self.tasks = store, run_id, list(tasks)
        self.method, self.control, self.dist, self.device = method, control, dist, device
        self.time_limit = float(time_limit)
        self.paused = False
        self.t_start = time.time()
        self.paused_seconds = 0.0  # a paused run's clock stands still: the time limit counts training
        self._paused_since: float | None = None

    # -- rank 0 --------------------------------------------------------------------------
    def _read(self, step: int) -> Decision:
        d = Decision()
        weights: dict[str, float] | None = None
        for cmd in self.store.pending_commands(self.run_id):
            kind, payload = cmd["kind"], cmd.get("payload") or {}
            try:
                if kind == "pause":
                    self.paused = True
                elif kind == "resume":
                    self.paused = False
                elif kind == "stop":
                    d.stop = True
                elif kind == "weights":
                    weights = self.merged_weights(payload.get("weights", {}), weights)
                else:
                    raise ConfigError("kind", f"unknown command {kind!r}")
            except ConfigError as e:
                self.store.mark_command(cmd["id"], "rejected", step=step, message=str(e))
                d.notes.append(("command_rejected", {"kind": kind, "message": str(e)}))
                continue
            self.store.mark_command(cmd["id"], "applied", step=step)
        d.stop = d.stop or self.control.stop_requested
        d.paused = self.paused and not d.stop
        d.weights = weights
        now = time.time()
        if d.paused and self._paused_since is None:
            self._paused_since = now
        elif not d.paused and self._paused_since is not None:
            self.paused_seconds += now - self._paused_since
            self._paused_since = None
        if self.time_limit > 0:
            elapsed = self.training_seconds(now)
            d.time_fraction = min(1.0, elapsed / self.time_limit)
            d.time_up = elapsed > self.time_limit
        return d

    def training_seconds(self, now: float | None = None) -> float:
        """Seconds spent training (pauses left out)."""
        now = time.time() if now is None else now
        paused = self.paused_seconds + (now - self._paused_since if self._paused_since is not None else 0.0)
        return max(0.0, now - self.t_start - paused)

    def merged_weights(self, new: Mapping[str, float], pending: Mapping[str, float] | None = None) -> dict[str, float]:
        """The method's weights with ``new`` applied, checked by Setup's rules; ConfigError naming
        the task otherwise (or saying why this method does not use a person's weights)."""
        base = dict(pending) if pending is not None else dict(self.method.user_weights)
        return dict(check_weights(self.tasks, {**base, **{str(k): v for k, v in new.items()}}, self.method))

    # -- every rank ------------------------------------------------------------------------
    def decide(self, step: int) -> Decision:
        """This step's decision: rank 0's, sent to every other rank."""
        d = self._read(step) if self.dist.is_main else Decision()
        if not self.dist.enabled:
            return d
        # one broadcast a step: [stop, paused, time_up, time_fraction, has_weights, w_1 .. w_T]
        t = torch.zeros(5 + len(self.tasks), dtype=torch.float64, device=self.device)
        if self.dist.is_main:
            t[:5] = torch.tensor([d.stop, d.paused, d.time_up, d.time_fraction, d.weights is not None],
                                 dtype=torch.float64)
            if d.weights is not None:
                t[5:] = torch.tensor([d.weights[k] for k in self.tasks], dtype=torch.float64)
        torch.distributed.broadcast(t, src=0)
        v = t.cpu().tolist()
        weights = dict(zip(self.tasks, v[5:], strict=True)) if v[4] else None
        return Decision(stop=bool(v[0]), paused=bool(v[1]), time_up=bool(v[2]), time_fraction=float(v[3]),
                        weights=weights, notes=d.notes)

    def wait(self, seconds: float) -> None:
        """A paused run's idle moment: rank 0 sleeps (a local stop request wakes it), the others
        wait in the next broadcast."""
        if self.dist.is_main:
            self.control.wait(seconds)


def finite_losses(values: Mapping[str, float], step: int) -> None:
    """Raise for the first task whose loss is not finite. Called on the losses averaged over
    every rank, so every rank sees the same values and fails together, naming the same task."""
    for t, v in values.items():
        if not math.isfinite(v):
            raise TrainingFailed(f"the {t} loss became {v} at step {step}; lower the learning rate or that task's weight")
