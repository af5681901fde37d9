"""The training engine through the RunManager: what a person starting runs would notice."""
import dataclasses
import math
import time

import pytest

from mtl_core.config import OptimConfig
from mtl_core.runs.manager import RunManager
from mtl_core.tasks import TASKS


@pytest.fixture
def manager(tmp_path):
    m = RunManager(tmp_path / "runs", max_concurrent=2)
    yield m
    m.shutdown()


def _keys(store, rid, split):
    return {r[2] for r in store.metrics(rid, split)}


def test_tiny_run_finishes_with_metrics_and_checkpoint(manager, tiny):
    rid = manager.start(tiny())
    assert manager.wait(rid, 120) == "finished"
    store = manager.store
    run = store.get_run(rid)
    assert run["step"] == 6
    train = _keys(store, rid, "train")
    assert {"loss/classification", "loss/detection", "loss/segmentation", "weight/detection", "lr"} <= train
    val = _keys(store, rid, "val")
    assert {"classification/accuracy", "detection/map50", "segmentation/miou"} <= val
    assert "classification/accuracy" in _keys(store, rid, "test")
    assert store.latest_checkpoint(rid, "final") is not None
    from mtl_core.inference.predictor import Predictor

    pred = Predictor(store.latest_checkpoint(rid)["path"])
    assert pred.step == 6


def test_same_config_and_seed_give_the_same_metrics(manager, tiny):
    a = manager.start(tiny())
    manager.wait(a, 120)
    b = manager.start(tiny())
    manager.wait(b, 120)
    va = [r[3] for r in manager.store.metrics(a, "val")]
    vb = [r[3] for r in manager.store.metrics(b, "val")]
    assert va == vb and len(va) > 0


def test_pause_resume_stop(manager, tiny):
    rid = manager.start(tiny(optim=OptimConfig(batch_size=16, steps=100_000, warmup_steps=0), eval_every=10_000))
    store = manager.store
    deadline = time.time() + 60
    while store.get_run(rid)["step"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    manager.pause(rid)
    while store.get_run(rid)["status"] != "paused" and time.time() < deadline:
        time.sleep(0.05)
    assert store.get_run(rid)["status"] == "paused"
    time.sleep(0.3)
    step = store.get_run(rid)["step"]
    time.sleep(0.5)
    assert store.get_run(rid)["step"] == step  # no progress while paused
    manager.resume(rid)
    while store.get_run(rid)["step"] <= step + 1 and time.time() < deadline:
        time.sleep(0.05)
    assert store.get_run(rid)["status"] == "running"
    manager.stop(rid)
    assert manager.wait(rid, 60) == "stopped"
    kinds = [e["kind"] for e in store.events(rid)]
    assert kinds.index("paused") < kinds.index("resumed")


def test_weight_change_mid_run_takes_effect_and_is_recorded(manager, tiny):
    rid = manager.start(tiny(optim=OptimConfig(batch_size=16, steps=100_000, warmup_steps=0), eval_every=10_000))
    store = manager.store
    deadline = time.time() + 60
    while store.get_run(rid)["step"] < 2 and time.time() < deadline:
        time.sleep(0.05)
    manager.set_weights(rid, {"detection": 0.25})
    while not store.events(rid, "weights") and time.time() < deadline:
        time.sleep(0.05)
    change_step = store.events(rid, "weights")[0]["step"]
    target = change_step + 2
    while store.get_run(rid)["step"] < target and time.time() < deadline:
        time.sleep(0.05)
    manager.stop(rid)
    manager.wait(rid, 60)
    w = {r[0]: r[3] for r in store.metrics(rid, "train", "weight/detection")}
    assert w[min(w)] == 1.0
    assert w[change_step + 1] == 0.25  # applied at the next step
    ev = store.events(rid, "weights")[0]["payload"]
    assert ev["old"]["detection"] == 1.0 and ev["new"]["detection"] == 0.25


def test_nan_loss_fails_the_run_naming_the_task(manager, tiny, monkeypatch):
    cls = TASKS.get("segmentation")
    monkeypatch.setattr(cls, "loss", lambda self, out, tgt: out.sum() * float("nan"))
    rid = manager.start(tiny())
    assert manager.wait(rid, 120) == "failed"
    run = manager.store.get_run(rid)
    assert "segmentation" in run["error"] and "nan" in run["error"]


def test_exception_in_a_loss_fails_only_that_run(manager, tiny, monkeypatch):
    cls = TASKS.get("detection")
    original = cls.loss

    def broken(self, out, tgt):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(cls, "loss", broken)
    rid = manager.start(tiny())
    assert manager.wait(rid, 120) == "failed"
    run = manager.store.get_run(rid)
    assert "detector exploded" in run["error"] and "Traceback" in run["traceback"]
    monkeypatch.setattr(cls, "loss", original)
    ok = manager.start(tiny())  # the process keeps working
    assert manager.wait(ok, 120) == "finished"


def test_reader_sees_metrics_while_training_writes(manager, tiny):
    rid = manager.start(tiny(optim=OptimConfig(batch_size=16, steps=100_000, warmup_steps=0), eval_every=10_000))
    from mtl_core.store.store import RunStore

    reader = RunStore(manager.store.root)
    deadline = time.time() + 60
    counts = []
    while time.time() < deadline and len(set(counts)) < 3:
        counts.append(len(reader.metrics(rid, "train")))
        time.sleep(0.2)
    manager.stop(rid)
    manager.wait(rid, 60)
    assert len(set(c for c in counts if c > 0)) >= 2  # the count grew while the run was running


def test_queue_beyond_the_concurrency_limit(tmp_path, tiny):
    m = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        long = tiny(optim=OptimConfig(batch_size=16, steps=100_000, warmup_steps=0), eval_every=10_000)
        a = m.start(long)
        b = m.start(tiny())
        assert m.store.get_run(b)["status"] == "queued" and m.queue() == [b]
        m.stop(a)
        assert m.wait(b, 120) == "finished"
    finally:
        m.shutdown()


def test_invalid_config_is_refused_before_a_run_exists(manager, tiny):
    from mtl_core.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.lr"):
        manager.start(dataclasses.replace(tiny(), optim=OptimConfig(lr=-1.0)))
    assert manager.store.list_runs() == []


def test_losses_are_finite_and_decrease_a_little(manager, tiny):
    cfg = tiny(optim=OptimConfig(batch_size=16, steps=40, warmup_steps=0, lr=3e-3), eval_every=40)
    rid = manager.start(cfg)
    assert manager.wait(rid, 120) == "finished"
    rows = manager.store.metrics(rid, "train", "loss/segmentation")
    vals = [r[3] for r in rows]
    assert all(v is not None and math.isfinite(v) for v in vals)
    assert sum(vals[-5:]) < sum(vals[:5])


def test_a_resume_restores_the_weights_in_force_at_its_checkpoint_and_forgets_later_changes(tmp_path, tiny):
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer

    store = RunStore(tmp_path)
    cfg = tiny(optim=OptimConfig(batch_size=16, steps=12, warmup_steps=0), checkpoint_every=4, eval_every=1000)
    rid = store.create_run(cfg.to_dict(), "resumed", status="queued")

    def progress(p: dict) -> None:  # reached after each step
        if p["step"] == 6:
            store.send_command(rid, "weights", {"weights": {"segmentation": 0.5}})  # before the checkpoint at 8
        if p["step"] == 9:
            store.send_command(rid, "weights", {"weights": {"segmentation": 0.25}})  # after it
        if p["step"] == 10:
            raise RuntimeError("the machine went away")

    first = Trainer(cfg, store, rid, on_progress=progress)
    first.flush_seconds = 0.0
    assert first.run() == "failed"
    assert [e["step"] for e in store.events(rid, "weights")] == [6, 9]
    assert Trainer(cfg, store, rid, resume=True).run() == "finished"
    # the change made after the checkpoint (step 8) is no longer in force, nor drawn
    assert [(e["step"], e["payload"]["new"]["segmentation"]) for e in store.events(rid, "weights")] == [(6, 0.5)]
    w = {s: v for s, _, _, v, _ in store.metrics(rid, "train", key="weight/segmentation")}
    assert [w[s] for s in range(1, 13)] == [1.0] * 6 + [0.5] * 6
