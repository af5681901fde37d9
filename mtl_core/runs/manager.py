"""The RunManager: one per process, thread-safe, owns the training threads.

Pages (and the CLI) call it to start, pause, resume, stop or retune a run. Steering goes through
the run store (:meth:`~mtl_core.store.store.RunStore.send_command`), so it works the same for a
run this process trains, one trained by ``python -m mtl_core train`` or by a torchrun job in the
same runs directory. Everything a page shows is read back from the store. Runs beyond the
concurrency limit wait in a visible queue (status ``queued``) and start as slots free up.

A manager registers itself in the store as an *owner* and keeps a heartbeat, so another
dashboard on the same runs directory leaves its queued runs alone; the same heartbeat thread
sweeps runs whose trainer stopped beating into ``interrupted``.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtl_core.config import ExperimentConfig
from mtl_core.errors import ConfigError, MTLError
from mtl_core.runs import ray_executor
from mtl_core.runs.gpus import GpuSlots, gpu_count, runs_per_gpu, wants_gpu
from mtl_core.store.ids import check_run_id, default_runs_dir
from mtl_core.store.liveness import HEARTBEAT_SECONDS, Heartbeat, host_and_pid, stale_seconds
from mtl_core.store.status import TERMINAL, RunStatus
from mtl_core.store.store import RunStore
from mtl_core.training.control import Control
from mtl_core.training.loop import Trainer
from mtl_core.training.validation import check
from mtl_core.weighting import WEIGHTINGS
from mtl_core.weights import check_weights, weights_in_force

SWEEP_SECONDS = 10.0  # how often a manager looks for runs whose trainer stopped beating


def default_max_concurrent() -> int:
    """One run per GPU (``MTL_RUNS_PER_GPU`` per GPU) when there are GPUs, else one per two CPU
    cores (at least one)."""
    try:
        count = gpu_count()
    except Exception:  # pragma: no cover - torch without CUDA runtime
        count = 0
    if count:
        return count * runs_per_gpu()
    return max(1, (os.cpu_count() or 1) // 2)


@dataclass
class _Job:
    config: ExperimentConfig
    control: Control = field(default_factory=Control)  # this process's own stop requests (shutdown)
    thread: threading.Thread | None = None
    resume: bool = False


EXECUTORS = ("thread", "ray")


class RunManager:
    def __init__(self, runs_dir: str | os.PathLike | None = None, max_concurrent: int | None = None,
                 recover: bool = True, stale_after: float | None = None, executor: str = "thread",
                 address: str | None = None) -> None:
        """``recover``: runs whose trainer has not beaten for ``stale_after`` seconds (default
        ``MTL_HEARTBEAT_STALE_S``, 30) are marked interrupted, now and every few seconds from then
        on. ``executor``: ``thread`` trains each run in a thread of this process; ``ray`` as a task
        of the Ray cluster at ``address`` (:mod:`mtl_core.runs.ray_executor`), as many at once as
        the cluster has room for."""
        if executor not in EXECUTORS:
            raise ConfigError("executor", f"unknown executor {executor!r}; one of {', '.join(EXECUTORS)}")
        self.store = RunStore(runs_dir)
        self.executor, self._cluster, room = executor, {}, 0
        if executor == "ray":
            self._cluster = ray_executor.connect(address)
            hosts = ray_executor.node_hosts()
            if not self.store.url and len(hosts) > 1:
                raise MTLError(f"the Ray cluster spans {len(hosts)} machines ({', '.join(sorted(hosts)[:4])}) and the "
                               f"run store is SQLite on this one ({self.store.where}), which no other machine may "
                               f"write: set MTL_RUNS_DB to a PostgreSQL database every machine reaches")
            ray_executor.warm_up(self._cluster)
            room = ray_executor.capacity(self._cluster)
        self.max_concurrent = max_concurrent or int(os.environ.get("MTL_MAX_RUNS", 0)) or room or default_max_concurrent()
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self.launched: dict[str, float] = {}  # when each run left this manager's queue (bench/cluster_study.py)
        count = gpu_count()
        self.gpus = GpuSlots(count, runs_per_gpu() if count else 1)  # each run that wants a GPU gets its own (gpus.py)
        host, pid = host_and_pid()
        self.owner = f"{host}-{pid}-{secrets.token_hex(3)}"
        self.store.register_owner(self.owner, host, pid)
        self._last_sweep = 0.0
        self.recover, self.stale_after = recover, float(stale_seconds() if stale_after is None else stale_after)
        if recover:
            self.store.mark_interrupted(self.stale_after)
        self._heartbeat = Heartbeat(self._beat, HEARTBEAT_SECONDS, name=f"manager-{self.owner}").start()

    def _beat(self) -> None:
        self.store.owner_heartbeat(self.owner)
        if self.recover and time.time() - self._last_sweep > min(SWEEP_SECONDS, self.stale_after):
            self._last_sweep = time.time()
            self.store.mark_interrupted(self.stale_after)  # a trainer anywhere that stopped beating shows so

    # -- starting -----------------------------------------------------------------
    def start(self, config: ExperimentConfig, name: str = "", source: str = "dashboard",
              plan_key: str | None = None, tags: dict | None = None) -> str:
        """Validate ``config`` (raises ConfigError naming the field), record the run and start or
        queue it; returns its id. ``plan_key`` and ``tags``: what the run is in a study. The run
        records the config with its tasks resolved (what each column of a label table is)."""
        config = check(config)
        with self._lock:
            run_id = self.store.create_run(config.to_dict(), name or config.name, source, config.optim.steps,
                                           owner=self.owner, plan_key=plan_key, tags=tags)
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
            if (run_id in self._jobs and self._alive(run_id)) or self.store.run_alive(run):
                raise ConfigError("run_id", f"run {run_id} is still {run['status']}; stop it before resuming it")
            if self.store.latest_checkpoint(run_id) is None:
                raise ConfigError("run_id", f"run {run_id} has no checkpoint to resume from; start it anew")
            config = ExperimentConfig.from_dict(run["config"])
            self._jobs[run_id] = _Job(config, resume=True)
            self.store.set_owner(run_id, self.owner)
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
        """Start queued runs, first come first served, while there is room; a run that wants a GPU
        waits for one of its own (see :mod:`mtl_core.runs.gpus`)."""
        with self._lock:
            while self._queue and self._running_count() < self.max_concurrent:
                run_id = self._queue[0]
                job = self._jobs[run_id]
                if job.control.stop_requested:
                    self._queue.pop(0)
                    continue
                config = job.config
                if self.executor == "thread" and self.gpus.count and wants_gpu(config.device):
                    gpu = self.gpus.acquire(run_id)
                    if gpu is None:
                        return  # every GPU is busy: the next run to end starts this one
                    config = dataclasses.replace(config, device=f"cuda:{gpu}")
                self._queue.pop(0)
                self.launched[run_id] = time.time()
                job.thread = threading.Thread(target=self._run, args=(run_id, job, config), name=f"train-{run_id}",
                                              daemon=True)
                job.thread.start()

    def _run(self, run_id: str, job: _Job, config: ExperimentConfig) -> None:
        try:
            if self.executor == "ray":
                self._run_on_ray(run_id, job, config)
            else:
                Trainer(config, self.store, run_id, job.control, resume=job.resume).run()
        finally:
            self.gpus.release(run_id)
            self._schedule_after(run_id)

    def _run_on_ray(self, run_id: str, job: _Job, config: ExperimentConfig) -> None:
        """Train the run as a Ray task and wait for it here (this thread holds its slot); a task Ray
        gave up on (its node lost more often than the retries allow), or one the cluster cannot
        take, fails the run, saying so."""
        try:
            ray_executor.wait(ray_executor.submit(run_id, config.to_dict(), str(self.store.root.resolve()),
                                                  self.store.url, job.resume, self._cluster))
        except MTLError as e:
            run = self.store.get_run(run_id)
            if run is not None and run["status"] not in TERMINAL:
                self.store.set_status(run_id, RunStatus.FAILED, error=str(e))

    def _schedule_after(self, run_id: str) -> None:
        # the finishing thread is still alive here: schedule from a fresh thread once it ends
        t = self._jobs[run_id].thread

        def later() -> None:
            if t is not None:
                t.join()
            self._schedule()

        threading.Thread(target=later, daemon=True).start()

    # -- steering (any run in the store, wherever it trains) ------------------------------
    def pause(self, run_id: str) -> None:
        """Ask the run's trainer to pause at its next step (a queued run starts paused)."""
        self.store.send_command(check_run_id(run_id), "pause")

    def resume(self, run_id: str) -> None:
        self.store.send_command(check_run_id(run_id), "resume")

    def stop(self, run_id: str) -> None:
        """Stop a run at its next step (it saves a checkpoint); a run waiting in this manager's
        queue is stopped at once."""
        check_run_id(run_id)
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._jobs[run_id].control.stop()
                self.store.set_status(run_id, RunStatus.STOPPED)
                return
        self.store.send_command(run_id, "stop")

    def set_weights(self, run_id: str, weights: Mapping[str, float]) -> dict[str, float]:
        """New task weights for a running run, merged with those in force and checked by Setup's
        rules (ConfigError naming the task otherwise, or saying why its method does not use a
        person's weights). The trainer applies them at its next step and records them; returns
        the merged weights sent."""
        run = self.store.get_run(check_run_id(run_id))
        if run is None:
            raise ConfigError("run_id", f"no run {run_id!r} in {self.store.root}")
        if run["status"] in TERMINAL:
            raise ConfigError("run_id", f"run {run_id} has ended ({run['status']} at step {run['step']}); "
                              "its task weights can no longer change")
        config = ExperimentConfig.from_dict(run["config"])
        method = WEIGHTINGS.get(config.weighting.method, "weighting.method")
        current = weights_in_force(run["config"], self.store.events(run_id, "weights"))
        merged = dict(check_weights(config.tasks, {**current, **{str(k): v for k, v in weights.items()}}, method))
        self.store.send_command(run_id, "weights", {"weights": merged})
        return merged

    def is_active(self, run_id: str) -> bool:
        """Whether the run is queued here or being trained anywhere that still beats (a page
        shows its controls)."""
        with self._lock:
            if self._alive(run_id):
                return True
        return self.store.run_alive(run_id)

    # -- reading ------------------------------------------------------------------
    def queue(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run's thread ends (tests, CLI); returns the stored status."""
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
            if self._alive(run_id) or self.store.run_alive(run_id):
                raise ConfigError("run_id", f"run {run_id} is still active; stop it before deleting")
            self._jobs.pop(run_id, None)
            self.store.delete_run(run_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._lock:
            jobs = list(self._jobs.items())
            self._queue.clear()
        for run_id, job in jobs:
            job.control.stop()
            if self.executor == "ray" and job.thread is not None and job.thread.is_alive():
                try:  # a Ray task hears only the store: it saves a checkpoint and stops
                    self.store.send_command(run_id, "stop")
                except ConfigError:  # it ended meanwhile
                    pass
        for _, job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)
        self._heartbeat.stop()
        self.store.remove_owner(self.owner)


_MANAGERS: dict[str, RunManager] = {}
_MANAGERS_LOCK = threading.Lock()


ENGINE_MODULES = ("mtl_core.data", "mtl_core.models", "mtl_core.tasks", "mtl_core.weighting", "mtl_core.training.loop")


def preload() -> None:
    """Import what training a run needs (datasets, models, torchvision: about 2.5 s on the 2-core
    machine), so the first "Start" a person clicks does not wait for it. The dashboard calls it
    in a background thread when it starts; Python's import lock makes a page that imports the
    same modules meanwhile wait for them, not import them twice."""
    import importlib

    for name in ENGINE_MODULES:
        importlib.import_module(name)


EXECUTOR_ENV, ADDRESS_ENV = "MTL_EXECUTOR", "MTL_RAY_ADDRESS"


def get_manager(runs_dir: str | os.PathLike | None = None) -> RunManager:
    """The process-wide RunManager for a runs directory; ``MTL_EXECUTOR=ray`` (and
    ``MTL_RAY_ADDRESS``, default auto) makes the dashboard's runs, studies and carry-ons Ray tasks."""
    key = str(Path(runs_dir if runs_dir is not None else default_runs_dir()).resolve())
    with _MANAGERS_LOCK:
        if key not in _MANAGERS:
            _MANAGERS[key] = RunManager(key, executor=os.environ.get(EXECUTOR_ENV, "").strip() or "thread",
                                        address=os.environ.get(ADDRESS_ENV, "").strip() or None)
        return _MANAGERS[key]


__all__ = ["ENGINE_MODULES", "RunManager", "get_manager", "preload"]
