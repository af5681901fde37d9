"""One run per GPU: which GPU each of a manager's concurrent runs trains on.

``device: auto`` (or ``cuda``) resolves to GPU 0 in a trainer on its own, so a manager with G
GPUs running G runs at once would put all of them on one GPU while the others idle. The manager
instead hands each run that wants a GPU its own ``cuda:i``: the least busy GPU, never more than
``MTL_RUNS_PER_GPU`` runs on one (default 1). A run whose config names a GPU (``cuda:3``) or the
CPU is left where it asked to be.
"""
from __future__ import annotations

import os
import threading

from mtl_core.errors import ConfigError

RUNS_PER_GPU_ENV = "MTL_RUNS_PER_GPU"


def gpu_count() -> int:
    """The CUDA GPUs this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def runs_per_gpu() -> int:
    """How many runs may share one GPU: ``MTL_RUNS_PER_GPU`` (default 1)."""
    raw = os.environ.get(RUNS_PER_GPU_ENV, "1").strip() or "1"
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(RUNS_PER_GPU_ENV, f"expected a whole number of runs per GPU such as 1 or 2, got {raw!r}") from None
    if n < 1:
        raise ConfigError(RUNS_PER_GPU_ENV, f"at least 1 run per GPU, got {n}")
    return n


def wants_gpu(device: str) -> bool:
    """Whether a run's ``device`` setting leaves the GPU to the manager (``auto`` or ``cuda``)."""
    return device in ("auto", "cuda")


class GpuSlots:
    """Which runs train on which GPU; thread-safe."""

    def __init__(self, count: int, per_gpu: int = 1) -> None:
        self.count, self.per_gpu = int(count), int(per_gpu)
        self._on: dict[str, int] = {}  # run id -> its GPU
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Runs that can train on GPUs at once."""
        return self.count * self.per_gpu

    def load(self) -> list[int]:
        """Runs on each GPU, by index."""
        with self._lock:
            return [sum(1 for g in self._on.values() if g == i) for i in range(self.count)]

    def acquire(self, run_id: str) -> int | None:
        """A GPU for ``run_id``: the least busy one with room (the lowest index among equals), or
        ``None`` when every GPU holds ``per_gpu`` runs. A run that holds one keeps it."""
        with self._lock:
            if run_id in self._on:
                return self._on[run_id]
            load = [sum(1 for g in self._on.values() if g == i) for i in range(self.count)]
            free = [i for i in range(self.count) if load[i] < self.per_gpu]
            if not free:
                return None
            gpu = min(free, key=lambda i: (load[i], i))
            self._on[run_id] = gpu
            return gpu

    def release(self, run_id: str) -> None:
        """The run has ended: its GPU takes the next one."""
        with self._lock:
            self._on.pop(run_id, None)
