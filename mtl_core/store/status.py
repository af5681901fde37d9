"""A run's status, one set of names for the store, the trainer, the manager and the pages.

``RunStatus`` is a ``str`` enum: a status read back from the store (a plain string) compares
equal to its member, so ``run["status"] == RunStatus.FINISHED`` holds either way.
"""
from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"  # waiting for a training slot
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # trained to its last step (or its time limit) and scored on test
    FAILED = "failed"  # stopped by an error; the reason and traceback are stored
    STOPPED = "stopped"  # stopped by a person; a checkpoint was saved
    INTERRUPTED = "interrupted"  # its process died (no heartbeat); resumable from its last checkpoint


STATUSES = tuple(RunStatus)
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)  # not ended: may still change
TERMINAL = (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.INTERRUPTED)
RESUMABLE = (RunStatus.STOPPED, RunStatus.INTERRUPTED, RunStatus.FAILED)  # continue from the last checkpoint
WITH_CHECKPOINTS = (RunStatus.FINISHED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.STOPPED, RunStatus.INTERRUPTED)

__all__ = ["ACTIVE", "RESUMABLE", "STATUSES", "TERMINAL", "WITH_CHECKPOINTS", "RunStatus"]
