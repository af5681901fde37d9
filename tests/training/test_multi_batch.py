"""Methods that use several batches a step (MoDo, SDMGrad: ``batches_per_step`` 3) through the
trainer: each step's batches are distinct, consecutive in the run's data order (one epoch uses
every sample once), the losses logged are their mean, images/s counts them all, the NaN guard
checks each, and a run is the same for a seed and resumes to the same metrics."""
import dataclasses
import math

import pytest

from mtl_core.config import DataConfig, OptimConfig, WeightingConfig
from mtl_core.store.store import RunStore
from mtl_core.training.loop import Trainer
from mtl_core.weighting.modo import MoDo


def _config(tiny, method: str, **kw):
    # 48 samples, batches of 8: six batches an epoch, two steps of three
    return tiny(tasks=("classification", "segmentation"), weighting=WeightingConfig(method=method),
                data=DataConfig(image_size=32, train_size=48, val_size=8, test_size=8), **kw)


def _run(cfg, root, on_progress=None, resume=False, rid=None):
    store = RunStore(root)
    rid = rid or store.create_run(cfg.to_dict(), "multi", status="queued")
    trainer = Trainer(cfg, store, rid, on_progress=on_progress, resume=resume)
    trainer.flush_seconds = 0.0
    return trainer.run(), store, rid


def _history(store, rid):
    return [(s, split, k, v) for split in ("train", "val", "test")
            for s, _, k, v, _ in store.metrics(rid, split) if k != "images_per_s"]


def test_each_step_gets_three_distinct_batches_and_logs_their_mean_loss(tmp_path, tiny, monkeypatch):
    drawn, seen = [], []
    batch = Trainer._batch
    combine = MoDo.combine_multi

    def spy_batch(self, order, pos, d):
        drawn.append(order[pos:pos + self.config.optim.batch_size].tolist())
        return batch(self, order, pos, d)

    def spy_combine(self, grads, losses, step):
        seen.append(([g.clone() for g in grads], [v.tolist() for v in losses]))
        return combine(self, grads, losses, step)

    monkeypatch.setattr(Trainer, "_batch", spy_batch)
    monkeypatch.setattr(MoDo, "combine_multi", spy_combine)
    progress = []
    cfg = _config(tiny, "modo", optim=OptimConfig(batch_size=8, steps=2, warmup_steps=0), checkpoint_every=0)
    status, store, rid = _run(cfg, tmp_path, on_progress=progress.append)
    assert status == "finished", store.get_run(rid)["error"]
    assert len(drawn) == 6 and len(seen) == 2
    assert sorted(i for b in drawn for i in b) == list(range(48))  # one epoch: every sample once
    for grads, losses in seen:  # three different batches: three different gradients and losses
        assert len({tuple(v) for v in losses}) == 3
        assert all((grads[i] - grads[j]).abs().max() > 0 for i, j in ((0, 1), (0, 2), (1, 2)))
    logged = {k: v for s, _, k, v, _ in store.metrics(rid, "train", "loss/") if s == 1}
    for i, t in enumerate(cfg.tasks):  # the mean over the step's three batches
        assert logged[f"loss/{t}"] == pytest.approx(sum(v[i] for v in seen[0][1]) / 3, rel=1e-6)
    last = progress[-1]
    assert last["step"] == 2
    assert last["images_per_s"] * last["elapsed_s"] == pytest.approx(2 * 3 * 8)  # every batch counted


def test_a_nan_in_the_second_batch_fails_the_run_naming_the_task(tmp_path, tiny, monkeypatch):
    from mtl_core.tasks import TASKS

    cls = TASKS.get("segmentation")
    original, calls = cls.loss, {"n": 0}

    def loss(self, output, target):
        calls["n"] += 1
        return original(self, output, target) * (float("nan") if calls["n"] == 2 else 1.0)

    monkeypatch.setattr(cls, "loss", loss)
    status, store, rid = _run(_config(tiny, "sdmgrad"), tmp_path)
    assert status == "failed" and "the segmentation loss became nan at step 0" in store.get_run(rid)["error"]


def test_a_run_is_the_same_for_its_seed_and_resumes_to_the_same_metrics(tmp_path, tiny):
    # SDMGrad: its weights w carry over from step to step, so the checkpoint must hold them
    cfg = _config(tiny, "sdmgrad", optim=OptimConfig(batch_size=8, steps=4, warmup_steps=0, lr=3e-3),
                  checkpoint_every=2, eval_every=2)
    status, store, straight = _run(cfg, tmp_path / "a")
    assert status == "finished"

    def crash(p: dict) -> None:
        if p["step"] == 3:  # after the checkpoint at 2
            raise RuntimeError("the machine went away")

    status, store_b, rid = _run(cfg, tmp_path / "b", on_progress=crash)
    assert status == "failed"
    assert _run(cfg, tmp_path / "b", resume=True, rid=rid)[0] == "finished"
    history = _history(store, straight)
    assert {s for s, split, *_ in history if split == "train"} == {1, 2, 3, 4}
    assert _history(store_b, rid) == history  # steps 1-2 from a fresh run, 3-4 from the resumed one


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trains_under_autocast(tmp_path, tiny, precision):
    # fp16: the methods multiply by GradScaler's scale themselves; a run failed in unscale_ (for every
    # method) while scale() had never been called
    cfg = dataclasses.replace(_config(tiny, "modo", optim=OptimConfig(batch_size=8, steps=1, warmup_steps=0)),
                              precision=precision, checkpoint_every=0)
    status, store, rid = _run(cfg, tmp_path)
    assert status == "finished", store.get_run(rid)["error"]
    rows = store.metrics(rid, "train", "loss/") + store.metrics(rid, "train", "weight/")
    assert rows and all(math.isfinite(v) for *_, v, _ in rows)
