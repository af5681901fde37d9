"""How a run that fails says why: the reason a person reads for each kind of fault, and recording it
in the run store, also when the store itself is what was lost."""
from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from mtl_core.errors import MTLError, StoreUnavailable
from mtl_core.store.status import RunStatus
from mtl_core.store.store import RunStore


def failure_reason(error: BaseException) -> str:
    """What went wrong, in words that say what to do where there is something to do."""
    if isinstance(error, MemoryError):
        return "ran out of memory; lower the batch size or the image size"
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return "the GPU ran out of memory; lower the batch size or the image size"
    if isinstance(error, MTLError):  # ours say what was wrong themselves
        return str(error)
    return f"{type(error).__name__}: {error}"


def record_failure(store: RunStore, run_id: str, step: int, error: BaseException, tb: str,
                   flush: Callable[[], None]) -> str:
    """Mark the run failed with :func:`failure_reason` and the traceback, after ``flush`` (its rows
    not yet written) and its step. When the store's database was lost (:class:`StoreUnavailable`)
    those rows are given up and the status is tried once more (its own retry window); if that
    fails too the reason goes to stderr, and the run, not heard from, is shown as interrupted once
    the database is back, resumable from its last checkpoint."""
    reason = failure_reason(error)
    try:
        if not isinstance(error, StoreUnavailable):
            flush()
            store.update_progress(run_id, step)  # where it failed
    except Exception:
        pass
    try:
        store.set_status(run_id, RunStatus.FAILED, error=reason, traceback=tb)
    except StoreUnavailable as e:
        print(f"run {run_id} failed at step {step}: {reason}; and its status could not be written either ({e})",
              file=sys.stderr)
    return RunStatus.FAILED
