"""Faults inside a run end that run as failed, in plain words, and nothing else."""
import pytest
import torch

from mtl_core.config import OptimConfig
from mtl_core.data.scenes import ScenesDataset
from mtl_core.runs.manager import RunManager
from mtl_core.tasks import TASKS


@pytest.fixture
def manager(tmp_path):
    m = RunManager(tmp_path / "runs", max_concurrent=2)
    yield m
    m.shutdown()


def _fail_with(manager, tiny, monkeypatch, target, name, exc):
    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(target, name, boom)
    rid = manager.start(tiny())
    assert manager.wait(rid, 120) == "failed"
    return manager.store.get_run(rid)


def test_out_of_memory_says_so(manager, tiny, monkeypatch):
    run = _fail_with(manager, tiny, monkeypatch, TASKS.get("segmentation"), "loss", MemoryError())
    assert "ran out of memory" in run["error"] and "batch size" in run["error"]
    assert "MemoryError" in run["traceback"]


def test_cuda_out_of_memory_says_so(manager, tiny, monkeypatch):
    run = _fail_with(manager, tiny, monkeypatch, TASKS.get("segmentation"), "loss",
                     torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert "GPU ran out of memory" in run["error"]


def test_dataset_failing_mid_epoch_fails_the_run_and_keeps_the_others(manager, tiny, monkeypatch):
    original = ScenesDataset.get_batch
    calls = {"n": 0}

    def flaky(self, indices, *a, **k):
        if self.split == "train":
            calls["n"] += 1
            if calls["n"] == 4:
                raise OSError("disk read error on shard 7")
        return original(self, indices, *a, **k)

    long = tiny(optim=OptimConfig(batch_size=16, steps=40, warmup_steps=0), eval_every=1000)
    monkeypatch.setattr(ScenesDataset, "get_batch", flaky)
    rid = manager.start(tiny())
    assert manager.wait(rid, 120) == "failed"
    run = manager.store.get_run(rid)
    assert "disk read error on shard 7" in run["error"] and run["step"] == 3
    monkeypatch.setattr(ScenesDataset, "get_batch", original)
    other = manager.start(long)  # the process keeps serving and training
    assert manager.wait(other, 120) == "finished"


def test_a_failing_run_does_not_stop_a_concurrent_one(manager, tiny, monkeypatch):
    def broken(self, out, tgt):
        raise ValueError("bad depth target")

    monkeypatch.setattr(TASKS.get("depth"), "loss", broken)
    good = manager.start(tiny(optim=OptimConfig(batch_size=16, steps=30, warmup_steps=0)))  # no depth task
    bad = manager.start(tiny(tasks=("classification", "depth")))
    assert manager.wait(bad, 120) == "failed"
    assert "bad depth target" in manager.store.get_run(bad)["error"]
    assert manager.wait(good, 120) == "finished"
