"""Ray as the executor of a RunManager's runs: each run is a Ray task on whichever node of a cluster has
the resources it asks for (one GPU when the run trains on CUDA and the cluster has GPUs, else
``MTL_RAY_CPUS_PER_RUN`` CPUs, default 1), so a study spreads over many machines.

What a run needs to travel is small: its id, its config and where the store is. The task opens the
same run store (``MTL_RUNS_DB``: a PostgreSQL server every node reaches; checkpoints under a runs
directory every node reads, a shared file system) and trains there with the ordinary
:class:`~mtl_core.training.loop.Trainer`. Pause, resume, stop and retune go through the store's
commands, as for any run, so a dashboard anywhere with the same ``MTL_RUNS_DB`` steers it.

A node lost mid-run (its worker killed, its machine gone): Ray starts the task again on another
node, at most ``MTL_RUN_RETRIES`` times (default 2), and the task resumes the run from its last
checkpoint under the same id, so a study counts it once. Each start is an ``attempt`` event naming
the Ray node. Ray's own retries: Ray's documentation, "Task Fault Tolerance" (``max_retries``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mtl_core.errors import MTLError

RETRIES_ENV = "MTL_RUN_RETRIES"
CPUS_ENV = "MTL_RAY_CPUS_PER_RUN"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _int_env(name: str, default: int, low: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MTLError(f"{name}={raw!r}: expected a whole number such as {default}") from None
    if value < low:
        raise MTLError(f"{name}={value}: at least {low}")
    return value


def retries() -> int:
    """How many times a run lost with its node is started again (``MTL_RUN_RETRIES``, default 2)."""
    return _int_env(RETRIES_ENV, 2, 0)


def connect(address: str | None = None) -> dict[str, float]:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine by ``ray
    start``); returns its resources. A clear error when Ray is missing or no cluster answers."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - the lock installs it
        raise MTLError("--executor ray needs Ray: pip install ray") from e
    if not ray.is_initialized():
        try:
            ray.init(address=address or "auto", ignore_reinit_error=True, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": _pythonpath()}})
        except (ConnectionError, RuntimeError) as e:
            raise MTLError(f"no Ray cluster at {address or 'auto'}: {e}. Start one with `ray start --head` (and "
                           "`ray start --address HEAD:6379` on the other machines), or give --address") from None
    return ray.cluster_resources()


def node_hosts() -> set[str]:
    """The addresses of the cluster's live nodes (one per machine; a local test cluster has one)."""
    import ray

    return {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}


def _pythonpath() -> str:
    """Where the workers find mtl_core: this checkout (the same path on every node), then theirs."""
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(PROJECT_ROOT), extra) if p)


def resources_for(device: str, cluster: dict[str, float]) -> dict[str, float]:
    """What one run asks Ray for: a GPU when it trains on CUDA (``auto`` where the cluster has one),
    else CPUs. A run set to CUDA on a cluster without a GPU is refused: Ray would wait for one forever."""
    gpus = cluster.get("GPU", 0)
    if device.startswith("cuda") and gpus < 1:
        raise MTLError(f"the run is set to device {device!r} and the Ray cluster has no GPU; set device auto or cpu, "
                       "or add a node with a GPU")
    if device.startswith("cuda") or (device == "auto" and gpus >= 1):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": _int_env(CPUS_ENV, 1, 1)}


def capacity(cluster: dict[str, float]) -> int:
    """How many runs the cluster trains at once: one per GPU, else one per ``MTL_RAY_CPUS_PER_RUN`` CPUs."""
    if cluster.get("GPU", 0) >= 1:
        return int(cluster["GPU"])
    return max(1, int(cluster.get("CPU", 1) // _int_env(CPUS_ENV, 1, 1)))


def train_remote(run_id: str, config: dict[str, Any], runs_dir: str, db_url: str | None, resume: bool) -> str:
    """The body of a run's Ray task, on a worker: open the store, resume from the last checkpoint when
    there is one (a retry after a lost node), train, return the final status."""
    import ray

    from mtl_core.config import ExperimentConfig
    from mtl_core.store.store import RunStore
    from mtl_core.training.control import Control
    from mtl_core.training.loop import Trainer

    store = RunStore(runs_dir, url=db_url)
    cfg = ExperimentConfig.from_dict(config)  # "auto" on a GPU task is the GPU Ray gave it (CUDA_VISIBLE_DEVICES)
    has_checkpoint = store.latest_checkpoint(run_id) is not None
    run = store.get_run(run_id) or {}
    attempt = 1 + len(store.events(run_id, "attempt"))
    store.add_event(run_id, int(run.get("step") or 0), "attempt",
                    {"attempt": attempt, "node": ray.get_runtime_context().get_node_id(), "host": os.uname().nodename,
                     "pid": os.getpid(), "resume": bool(resume or has_checkpoint)})
    with store.transaction() as c:  # a study's table counts the run once, and says how often it started
        c.execute("UPDATE study_runs SET attempts=attempts+1 WHERE run_id=?", (run_id,))
    try:
        return Trainer(cfg, store, run_id, Control(), resume=bool(resume or has_checkpoint)).run()
    finally:
        store.close()


_REMOTE: Any = None
_WARM: Any = None


def _preload() -> None:
    import mtl_core.training.loop  # noqa: F401  (the trainer and all it stands on: data, models, tasks, methods)


def warm_up(cluster: dict[str, float]) -> list[Any]:
    """Start one worker per run slot that imports what training needs (torch, torchvision, the
    engine: seconds per worker), while the study is still being planned; Ray keeps those workers
    for the runs that follow, so no run waits for its imports. Not waited for."""
    import ray

    global _WARM
    if _WARM is None:
        _WARM = ray.remote(_preload)
    return [_WARM.options(num_cpus=resources_for("cpu", cluster)["num_cpus"], scheduling_strategy="SPREAD").remote()
            for _ in range(capacity(cluster))]


def submit(run_id: str, config: dict[str, Any], runs_dir: str, db_url: str | None, resume: bool,
           cluster: dict[str, float]) -> Any:
    """Start the run's Ray task; returns its ObjectRef (``ray.get`` it for the final status)."""
    import ray

    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(train_remote)
    options = {**resources_for(str(config.get("device", "auto")), cluster), "max_retries": retries(),
               "retry_exceptions": False, "scheduling_strategy": "SPREAD", "name": f"run-{run_id}"}
    return _REMOTE.options(**options).remote(run_id, config, runs_dir, db_url, resume)


def wait(ref: Any) -> str:
    """The task's final status; a task that Ray gave up on (its node lost more than the retries
    allow) raises MTLError saying so."""
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MTLError(f"its Ray task was lost {retries() + 1} times ({RETRIES_ENV}={retries()}): {first}") from None
