"""The RunManager: one per process, thread-safe, owns the training threads.

Pages (and the CLI) call it to start, pause, resume, stop or retune a run; everything a page
shows is read back from the :class:`~mtl_core.runs.store.RunStore`. Runs beyond the concurrency
limit wait in a visible queue (status ``queued``) and start as slots free up.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtl_core.config import ExperimentConfig
from mtl_core.training.loop import Control, Trainer
from mtl_core.errors import ConfigError
from mtl_core.runs.status import RunStatus
from mtl_core.runs.store import RunStore, check_run_id, default_runs_dir
from mtl_core.validation import check


def default_max_concurrent() -> int:
    """One run per GPU when there are GPUs, else one per two CPU cores (at least one)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except Exception:  # pragma: no cover - torch without CUDA runtime
        pass
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass
class _Job:
    config: ExperimentConfig
    control: Control = field(default_factory=Control)
    thread: threading.Thread | None = None
    resume: bool = False


class RunManager:
    def __init__(self, runs_dir: str | os.PathLike | None = None, max_concurrent: int | None = None,
                 recover: bool = True) -> None:
        self.store = RunStore(runs_dir)
        self.max_concurrent = max_concurrent or int(os.environ.get("MTL_MAX_RUNS", 0)) or default_max_concurrent()
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        if recover:
            self.store.mark_interrupted(only_pids_dead=True)

    # -- starting -----------------------------------------------------------------
    def start(self, config: ExperimentConfig, name: str = "", source: str = "dashboard") -> str:
        """Validate ``config`` (raises ConfigError naming the field), record the run and start or
        queue it; returns its id."""
        check(config)
        with self._lock:
            run_id = self.store.create_run(config.to_dict(), name or config.name, source, config.optim.steps)
            self._jobs[run_id] = _Job(config)
            self._queue.append(run_id)
            self._schedule()
        return run_id

    def start_baselines(self, run_id: str, tasks: Sequence[str] | None = None) -> dict[str, str]:
        """Single-task baselines for a run's tasks (same backbone, data, budget, seed), or for the
        given ``tasks`` of it only (a retry of those that failed): ``{task: run id}``."""
        run = self.store.get_run(check_run_id(run_id))
        if run is None:
            raise ConfigError("run_id", f"no run {run_id!r}")
        config = ExperimentConfig.from_dict(run["config"])
        unknown = sorted(set(tasks or ()) - set(config.tasks))
        if unknown:
            raise ConfigError("tasks", f"run {run_id} has no task {unknown[0]!r}; its tasks: {', '.join(config.tasks)}")
        return {c.tasks[0]: self.start(c, source="baseline") for c in config.single_task_baselines(run_id)
                if tasks is None or c.tasks[0] in tasks}

    def resume_run(self, run_id: str) -> str:
        """Continue an interrupted, stopped or failed run from its last checkpoint (same config)."""
        check_run_id(run_id)
        with self._lock:
            run = self.store.get_run(run_id)
            if run is None:
                raise ConfigError("run_id", f"no run {run_id!r} in {self.store.root}")
            if run_id in self._jobs and self._alive(run_id):
                raise ConfigError("run_id", f"run {run_id} is already running")
            if self.store.latest_checkpoint(run_id) is None:
                raise ConfigError("run_id", f"run {run_id} has no checkpoint to resume from; start it anew")
            config = ExperimentConfig.from_dict(run["config"])
            self._jobs[run_id] = _Job(config, resume=True)
            self.store.set_status(run_id, RunStatus.QUEUED)
            self._queue.append(run_id)
            self._schedule()
        return run_id

    def _alive(self, run_id: str) -> bool:
        job = self._jobs.get(run_id)
        return job is not None and (run_id in self._queue or (job.thread is not None and job.thread.is_alive()))

    def _running_count(self) -> int:
        return sum(1 for j in self._jobs.values() if j.thread is not None and j.thread.is_alive())

    def _schedule(self) -> None:
        with self._lock:
            while self._queue and self._running_count() < self.max_concurrent:
                run_id = self._queue.pop(0)
                job = self._jobs[run_id]
                if job.control.stop_requested:
                    continue
                job.thread = threading.Thread(target=self._run, args=(run_id, job), name=f"train-{run_id}", daemon=True)
                job.thread.start()

    def _run(self, run_id: str, job: _Job) -> None:
        try:
            Trainer(job.config, self.store, run_id, job.control, resume=job.resume).run()
        finally:
            self._schedule_after(run_id)

    def _schedule_after(self, run_id: str) -> None:
        # the finishing thread is still alive here: schedule from a fresh thread once it ends
        t = self._jobs[run_id].thread

        def later() -> None:
            if t is not None:
                t.join()
            self._schedule()

        threading.Thread(target=later, daemon=True).start()

    # -- steering -----------------------------------------------------------------
    def pause(self, run_id: str) -> None:
        with self._lock:
            job = self._require(run_id)
            job.control.pause()  # a queued run starts paused

    def resume(self, run_id: str) -> None:
        with self._lock:
            self._require(run_id).control.resume()

    def stop(self, run_id: str) -> None:
        with self._lock:
            job = self._require(run_id)
            job.control.stop()
            if run_id in self._queue:
                self._queue.remove(run_id)
                self.store.set_status(run_id, RunStatus.STOPPED)

    def set_weights(self, run_id: str, weights: dict[str, float]) -> None:
        """New task weights; the running trainer applies them at its next step and records it."""
        if not weights or all(float(w) == 0 for w in weights.values()) or any(float(w) < 0 for w in weights.values()):
            raise ConfigError("weighting.weights", "weights must be >= 0 and not all zero")
        with self._lock:
            self._require(run_id).control.set_weights(weights)

    def _require(self, run_id: str) -> _Job:
        check_run_id(run_id)
        job = self._jobs.get(run_id)
        if job is None or not self._alive(run_id):
            raise ConfigError("run_id", f"run {run_id} is not active in this process (it may have ended, "
                              "or been started elsewhere)")
        return job

    # -- reading ------------------------------------------------------------------
    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return self._alive(run_id)

    def queue(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run's thread ends (tests, CLI); returns the stored status."""
        import time

        deadline = None if timeout is None else time.time() + timeout
        while True:
            with self._lock:
                job = self._jobs.get(run_id)
                thread = job.thread if job else None
                queued = run_id in self._queue
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.time()))
                if not thread.is_alive():
                    break
            elif not queued:
                break
            if deadline is not None and time.time() >= deadline:
                break
            if queued:
                time.sleep(0.05)
        run = self.store.get_run(run_id)
        return run["status"] if run else "missing"

    def delete(self, run_id: str) -> None:
        """Delete a run that is not active: its records and files, nothing else."""
        with self._lock:
            if self._alive(run_id):
                raise ConfigError("run_id", f"run {run_id} is still active; stop it before deleting")
            self._jobs.pop(run_id, None)
            self.store.delete_run(run_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._lock:
            jobs = list(self._jobs.items())
            self._queue.clear()
        for _, job in jobs:
            job.control.stop()
        for _, job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)


_MANAGERS: dict[str, RunManager] = {}
_MANAGERS_LOCK = threading.Lock()


def get_manager(runs_dir: str | os.PathLike | None = None) -> RunManager:
    """The process-wide RunManager for a runs directory."""
    key = str(Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve())
    with _MANAGERS_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = RunManager(key)
        return _MANAGERS[key]


__all__ = ["RunManager", "get_manager"]


