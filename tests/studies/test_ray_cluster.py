"""A study on a real Ray cluster (``ray.cluster_utils.Cluster`` on this machine: a head with no CPUs
for runs and two worker nodes) writing to the tests' PostgreSQL store: its runs spread over both
workers, a worker lost mid-study costs no run and trains none twice, and commands sent from a
RunManager on the head reach a run training on a worker."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from mtl_core.config import ExperimentConfig
from mtl_core.runs.manager import RunManager
from mtl_core.store.status import RunStatus
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.store import StudyStore

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow

FAST_FAILURE_DETECTION = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                          "health_check_timeout_ms": 500, "health_check_failure_threshold": 4}
BASE = {"tasks": ["classification", "segmentation"], "device": "cpu", "eval_every": 1000,
        "data": {"image_size": 32, "train_size": 64, "val_size": 16, "test_size": 16},
        "optim": {"batch_size": 8, "steps": 6, "warmup_steps": 0}, "checkpoint_every": 3}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_FAILURE_DETECTION})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def head(cluster, postgres_url, tmp_path):
    """A RunManager on the head, its runs as Ray tasks, its store the tests' PostgreSQL server."""
    c, _ = cluster
    m = RunManager(tmp_path / "runs", executor="ray", address=c.address, stale_after=3.0)
    yield m
    m.shutdown(timeout=30)


def _nodes_of(store, run_id: str) -> list[str]:
    return [e["payload"]["node"] for e in store.events(run_id, "attempt")]


def test_a_study_of_six_runs_finishes_with_runs_on_both_worker_nodes(cluster, head):
    _, workers = cluster
    assert head.max_concurrent == 2  # the cluster's room: two CPUs, one per run
    runner = StudyRunner(head)
    spec = StudySpec.from_dict({"name": "on the cluster", "base": BASE, "seeds": 2, "baselines": False,
                                "factors": {"weighting.method": ["ew", "static", "uw"]}})
    study = runner.start(spec)
    counts = runner.wait(study, timeout=300)
    assert counts == {"total": 6, RunStatus.FINISHED: 6}, counts
    plan = StudyStore(head.store).plan(study)
    nodes = {n for row in plan for n in _nodes_of(head.store, row["run_id"])}
    assert nodes == {w.node_id for w in workers}  # both workers trained, the head (no CPUs) none
    assert all(row["attempts"] == 1 for row in plan)


def test_commands_from_the_head_reach_a_run_on_a_worker(head):
    cfg = ExperimentConfig.from_dict({**BASE, "optim": {**BASE["optim"], "steps": 100000}})
    rid = head.start(cfg)
    store = head.store
    _until(lambda: store.get_run(rid)["step"] >= 2, "two steps on a worker")
    head.pause(rid)
    _until(lambda: store.get_run(rid)["status"] == RunStatus.PAUSED, "the pause")
    assert head.set_weights(rid, {"segmentation": 0.25}) == {"classification": 1.0, "segmentation": 0.25}
    head.resume(rid)
    _until(lambda: store.events(rid, "weights"), "the retune")
    assert store.events(rid, "weights")[-1]["payload"]["new"]["segmentation"] == 0.25
    head.stop(rid)
    assert head.wait(rid, timeout=60) == RunStatus.STOPPED
    assert [c["state"] for c in store.commands(rid)] == ["applied"] * 4


def test_a_worker_node_lost_mid_study_costs_no_run_and_trains_none_twice(cluster, head):
    c, workers = cluster
    runner = StudyRunner(head)
    base = {**BASE, "optim": {**BASE["optim"], "steps": 40}, "checkpoint_every": 4}
    spec = StudySpec.from_dict({"name": "a node dies", "base": base, "seeds": 2, "baselines": False,
                                "factors": {"weighting.method": ["ew", "static"]}})
    study = runner.start(spec)
    store, studies = head.store, StudyStore(head.store)
    victim = workers[1]

    def training_on_victim():
        for row in studies.plan(study):
            if row["run_id"] and victim.node_id in _nodes_of(store, row["run_id"]) and store.latest_checkpoint(
                    row["run_id"]) and store.get_run(row["run_id"])["step"] >= 6:
                return row["run_id"]
        return None

    _until(training_on_victim, "a run past its first checkpoint on the second worker", 180)
    lost = training_on_victim()
    c.remove_node(victim, allow_graceful=False)  # the machine is gone: its trainer dies with it
    workers[1] = c.add_node(num_cpus=1)  # and another joins, as in a cluster that autoscales
    counts = runner.wait(study, timeout=300)
    plan = studies.plan(study)
    assert counts == {"total": 4, RunStatus.FINISHED: 4}, counts
    assert len({row["run_id"] for row in plan}) == 4  # each planned run once: the lost one under its own id
    row = next(r for r in plan if r["run_id"] == lost)
    assert row["attempts"] == 2 and len(set(_nodes_of(store, lost))) == 2  # again, on another node
    resumed = store.events(lost, "resumed_from_checkpoint")
    assert resumed and resumed[-1]["step"] >= 4  # from its checkpoint, not from scratch
    assert store.get_run(lost)["step"] == 40


def _until(predicate, what: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_study_whose_head_process_dies_is_carried_on_from_another_process(cluster, postgres_url, tmp_path):
    """``study run --executor ray`` killed with SIGKILL: Ray ends its tasks, their runs stop beating
    and are marked interrupted, and ``carry_on`` from another process (any machine with the
    database) finishes the study from the checkpoints, every planned run once."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from mtl_core.store.store import RunStore

    c, _ = cluster
    runs = tmp_path / "runs"
    spec = {"name": "head dies", "seeds": 1, "baselines": False, "factors": {"weighting.method": ["ew", "static"]},
            "base": {**BASE, "optim": {**BASE["optim"], "steps": 30}, "checkpoint_every": 4}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    root = Path(__file__).resolve().parents[2]
    head = subprocess.Popen([sys.executable, "-m", "mtl_core", "study", "run", str(tmp_path / "spec.json"),
                             "--executor", "ray", "--address", c.address, "--runs-dir", str(runs), "--quiet"],
                            cwd=root, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = RunStore(runs)
    try:
        _until(lambda: len(store.list_runs()) == 2 and all(
            store.latest_checkpoint(r["id"]) and r["step"] >= 6 for r in store.list_runs()), "both runs past 6 steps",
            180)
    finally:
        head.send_signal(signal.SIGKILL)
        head.wait(30)
    def orphaned() -> bool:
        store.mark_interrupted(stale_after=3.0)  # what any live manager's sweep does
        return all(r["status"] == RunStatus.INTERRUPTED for r in store.list_runs())

    _until(orphaned, "both orphaned runs to stop beating and be marked interrupted", 60)
    (study,) = [s["id"] for s in StudyStore(store).list()]
    m = RunManager(runs, executor="ray", address=c.address, stale_after=3.0)
    try:
        runner = StudyRunner(m)
        assert runner.carry_on(study)["resumed"] == 2
        assert runner.wait(study, timeout=240) == {"total": 2, RunStatus.FINISHED: 2}
    finally:
        m.shutdown(timeout=30)
    assert len(store.list_runs()) == 2  # carried on under the same ids: nothing trained twice from scratch
    for r in store.list_runs():
        assert store.events(r["id"], "resumed_from_checkpoint")[-1]["step"] >= 4 and r["step"] == 30


def test_a_dashboard_set_to_ray_trains_its_runs_on_the_cluster(cluster, postgres_url, tmp_path, monkeypatch):
    """``MTL_EXECUTOR=ray``: the dashboard's manager (Setup's Start, a study, Carry on) sends runs to the cluster."""
    from mtl_core.runs import manager as manager_module

    c, workers = cluster
    monkeypatch.setenv("MTL_EXECUTOR", "ray")
    monkeypatch.setenv("MTL_RAY_ADDRESS", c.address)
    m = manager_module.get_manager(tmp_path / "runs")
    try:
        assert m.executor == "ray"
        rid = m.start(ExperimentConfig.from_dict(BASE))
        assert m.wait(rid, timeout=120) == RunStatus.FINISHED
        assert set(_nodes_of(m.store, rid)) <= {w.node_id for w in workers}
    finally:
        m.shutdown(timeout=30)
        manager_module._MANAGERS.pop(str((tmp_path / "runs").resolve()), None)


def test_the_sqlite_store_with_a_cluster_of_several_machines_is_refused(cluster, tmp_path, monkeypatch):
    from mtl_core.errors import MTLError
    from mtl_core.runs import ray_executor

    c, _ = cluster
    monkeypatch.delenv("MTL_RUNS_DB", raising=False)
    monkeypatch.setattr(ray_executor, "node_hosts", lambda: {"10.0.0.1", "10.0.0.2"})
    with pytest.raises(MTLError, match=r"spans 2 machines.*SQLite.*set MTL_RUNS_DB"):
        RunManager(tmp_path / "runs", executor="ray", address=c.address)


def test_what_a_run_asks_of_the_cluster():
    from mtl_core.errors import MTLError
    from mtl_core.runs.ray_executor import resources_for

    assert resources_for("auto", {"CPU": 8.0, "GPU": 2.0}) == {"num_gpus": 1, "num_cpus": 1}
    assert resources_for("cuda:1", {"CPU": 8.0, "GPU": 2.0}) == {"num_gpus": 1, "num_cpus": 1}
    assert resources_for("auto", {"CPU": 8.0}) == {"num_cpus": 1} == resources_for("cpu", {"CPU": 8.0, "GPU": 1.0})
    with pytest.raises(MTLError, match="device 'cuda' and the Ray cluster has no GPU"):
        resources_for("cuda", {"CPU": 8.0})  # Ray would wait for a GPU forever
