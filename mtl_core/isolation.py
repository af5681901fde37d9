"""A run owns its randomness and leaves process-wide state alone.

The dashboard trains several runs side by side as threads of one process, and PyTorch keeps two
kinds of process-wide state they would otherwise share:

- **The global random generator.** ``nn.Module`` initialisation and torchvision's transforms draw
  from it and take no generator. :func:`seeded_global_rng` runs such code with the global
  generator seeded from the run's own seed, under one process-wide lock, and puts the previous
  state back afterwards; every other draw in a run comes from a ``torch.Generator`` it owns. So
  two runs started together make exactly the draws each would make alone.
- **The intra-op thread count.** A thread takes its count from a process-wide default at its first
  parallel op, and ``torch.set_num_threads`` anywhere changes that default. A training thread
  calls :func:`pin_threads` first thing, under the lock held by the only code here that changes
  the default (the scenes' render pool, for a moment while it starts its workers), so a run's
  thread count never depends on what another thread did at that moment. Nothing in a run or in
  inference calls ``torch.set_num_threads``.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

GLOBAL_RNG_LOCK = threading.RLock()
THREADS_LOCK = threading.Lock()


@contextmanager
def seeded_global_rng(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run a block that draws from torch's global generator (and ``device``'s, for a GPU) seeded
    with ``seed``, alone among the threads that do the same; the generators' previous states are
    restored afterwards. ``seed=None``: draw from (and advance) the global state as it is, still
    alone."""
    if seed is None:
        with GLOBAL_RNG_LOCK:
            yield
        return
    devices = [device] if device is not None and device.type != "cpu" else []
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=devices, device_type=devices[0].type if devices else "cuda"):
        torch.default_generator.manual_seed(int(seed))
        if devices and devices[0].type == "cuda":
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(int(seed))  # this device's generator only, not every GPU's
        elif devices:
            torch.get_device_module(devices[0].type).manual_seed(int(seed))
        yield


def pin_threads() -> int:
    """Fix the calling thread's intra-op thread count to the process default now; returns it."""
    with THREADS_LOCK:
        return torch.get_num_threads()
