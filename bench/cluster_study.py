"""The same 12-run study through the thread executor and through Ray (a local cluster on this machine:
a head with no CPUs for runs and two worker nodes of one CPU each), both on a PostgreSQL store of
the bench's own, two runs at a time in both.

Prints each executor's makespan and, per run, the seconds from leaving the manager's queue (its
slot opened) to its first training step; the last line is the Ray executor's per-run overhead:
the median of that delay on Ray minus the median on threads (target: under 3 s).

    python bench/cluster_study.py [--runs 12] [--steps 20]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl_core.runs.manager import RunManager  # noqa: E402
from mtl_core.store.status import RunStatus  # noqa: E402
from mtl_core.studies.runner import StudyRunner  # noqa: E402
from mtl_core.studies.spec import StudySpec  # noqa: E402
from mtl_core.studies.store import StudyStore  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402


def spec(runs: int, steps: int) -> StudySpec:
    seeds = max(1, runs // 3)
    return StudySpec.from_dict({
        "name": "cluster bench", "seeds": seeds, "baselines": False,
        "factors": {"weighting.method": ["ew", "static", "uw"]},
        "base": {"tasks": ["classification", "segmentation"], "device": "cpu", "eval_every": 10**6,
                 "checkpoint_every": 0, "data": {"image_size": 32, "train_size": 64, "val_size": 16, "test_size": 16},
                 "optim": {"batch_size": 8, "steps": steps, "warmup_steps": 0}}})


def first_step_delays(manager: RunManager, study: str) -> tuple[list[float], float]:
    """Per run: seconds from its slot opening to its first logged training step; and the makespan."""
    store = manager.store
    delays, ends, starts = [], [], []
    for row in StudyStore(store).plan(study):
        run = store.get_run(row["run_id"])
        assert run["status"] == RunStatus.FINISHED, (run["id"], run["status"], run.get("error"))
        first = store.metrics(run["id"], split="train")[0][4]
        delays.append(first - manager.launched[run["id"]])
        starts.append(run["created"])
        ends.append(run["finished"])
    return delays, max(ends) - min(starts)


def run_study(executor: str, runs_dir: Path, args, address: str | None = None) -> tuple[list[float], float]:
    manager = RunManager(runs_dir, max_concurrent=2, executor=executor, address=address)
    try:
        runner = StudyRunner(manager)
        study = runner.start(spec(args.runs, args.steps))
        runner.wait(study, timeout=1800)
        return first_step_delays(manager, study)
    finally:
        manager.shutdown(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    server = PostgresServer()
    cluster = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["MTL_RUNS_DB"] = server.url(server.new_schema())
            threads, thread_span = run_study("thread", Path(tmp) / "threads", args)
            os.environ["MTL_RUNS_DB"] = server.url(server.new_schema())
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            on_ray, ray_span = run_study("ray", Path(tmp) / "ray", args, address=cluster.address)
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()
        server.close()
    for name, delays, span in (("threads", threads, thread_span), ("ray", on_ray, ray_span)):
        print(f"{name:>8}: makespan {span:6.1f} s; slot to first step per run: median "
              f"{statistics.median(delays):.2f} s, mean {statistics.mean(delays):.2f} s, max {max(delays):.2f} s  "
              f"[{', '.join(f'{d:.1f}' for d in delays)}]")
    overhead = statistics.median(on_ray) - statistics.median(threads)
    print(f"Ray executor per-run overhead: {overhead:.2f} s (target < 3 s)")


if __name__ == "__main__":
    main()
