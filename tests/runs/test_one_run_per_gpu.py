"""One run per GPU: on a machine with G GPUs a manager gives each concurrent run its own ``cuda:i``
(least busy first), ``MTL_RUNS_PER_GPU`` lets runs share, and a run that ends frees its GPU for the
next in the queue. The device count is patched: the trainer is replaced by one that records where it
was sent and waits to be let go, so no GPU is needed."""
from __future__ import annotations

import threading
import time

import pytest

from mtl_core.errors import ConfigError
from mtl_core.runs import gpus
from mtl_core.runs import manager as manager_module
from mtl_core.runs.gpus import GpuSlots
from mtl_core.runs.manager import RunManager
from tests.conftest import tiny_config


class FakeTrainer:
    """Records the device each run was sent to and trains until the test lets it go."""

    devices: dict[str, str] = {}
    release: dict[str, threading.Event] = {}

    def __init__(self, config, store, run_id, control=None, resume=False, on_progress=None) -> None:
        self.config, self.store, self.run_id = config, store, run_id

    def run(self) -> str:
        FakeTrainer.devices[self.run_id] = self.config.device
        FakeTrainer.release.setdefault(self.run_id, threading.Event()).wait(30)
        self.store.set_status(self.run_id, "finished")
        return "finished"


@pytest.fixture
def gpus_4(monkeypatch, tmp_path):
    monkeypatch.setattr(manager_module, "gpu_count", lambda: 4)
    monkeypatch.setattr(manager_module, "Trainer", FakeTrainer)
    FakeTrainer.devices, FakeTrainer.release = {}, {}

    made: list[RunManager] = []

    def make(**kw) -> RunManager:
        made.append(RunManager(tmp_path / "runs", **kw))
        return made[-1]

    yield make
    for e in FakeTrainer.release.values():
        e.set()
    for m in made:
        m.shutdown()


def _started(n: int, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while len(FakeTrainer.devices) < n and time.time() < deadline:
        time.sleep(0.01)
    assert len(FakeTrainer.devices) >= n, FakeTrainer.devices


def test_four_runs_on_four_gpus_each_get_their_own(gpus_4):
    m = gpus_4()
    assert m.max_concurrent == 4  # one per GPU by default
    ids = [m.start(tiny_config(name=f"r{i}", device="auto")) for i in range(5)]
    _started(4)
    time.sleep(0.2)
    assert sorted(FakeTrainer.devices[r] for r in ids[:4]) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert ids[4] not in FakeTrainer.devices and m.queue() == [ids[4]]  # a fifth waits for a GPU
    FakeTrainer.release.setdefault(ids[2], threading.Event()).set()  # the run on one GPU ends ...
    _started(5)
    assert FakeTrainer.devices[ids[4]] == FakeTrainer.devices[ids[2]]  # ... and the next takes that GPU


def test_runs_per_gpu_lets_runs_share_spread_evenly(gpus_4, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_PER_GPU", "2")
    m = gpus_4()
    assert m.max_concurrent == 8
    ids = [m.start(tiny_config(name=f"r{i}", device="auto")) for i in range(8)]
    _started(8)
    used = [FakeTrainer.devices[r] for r in ids]
    assert sorted(used) == sorted([f"cuda:{i}" for i in range(4)] * 2)
    assert m.gpus.load() == [2, 2, 2, 2]


def test_a_run_that_names_its_device_is_left_there(gpus_4):
    m = gpus_4()
    a = m.start(tiny_config(name="on cpu", device="cpu"))
    b = m.start(tiny_config(name="auto", device="auto"))
    _started(2)
    assert FakeTrainer.devices[a] == "cpu" and FakeTrainer.devices[b] == "cuda:0"
    assert m.gpus.load() == [1, 0, 0, 0]  # the CPU run holds no GPU


def test_slots_pick_the_least_busy_gpu_and_refuse_when_full():
    slots = GpuSlots(2, per_gpu=2)
    assert [slots.acquire(r) for r in "abc"] == [0, 1, 0]
    assert slots.acquire("a") == 0  # a run keeps its GPU
    assert slots.acquire("d") == 1 and slots.acquire("e") is None
    slots.release("b")
    assert slots.acquire("e") == 1


def test_a_bad_runs_per_gpu_names_the_variable(monkeypatch):
    monkeypatch.setenv("MTL_RUNS_PER_GPU", "two")
    with pytest.raises(ConfigError, match="MTL_RUNS_PER_GPU"):
        gpus.runs_per_gpu()
    monkeypatch.setenv("MTL_RUNS_PER_GPU", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        gpus.runs_per_gpu()
