"""When a run evaluates, and what an evaluation reads: an early evaluation starts the validation
curves within seconds, the validation batches are made once per run, and neither changes what
the run learns."""
from __future__ import annotations

import torch

from mtl_core.config import OptimConfig
from mtl_core.runs.manager import RunManager


def val_steps(store, run_id: str) -> list[int]:
    return sorted({step for step, _, key, _, _ in store.metrics(run_id, "val") if key == "loss/classification"})


def test_first_eval_adds_one_early_evaluation_and_leaves_training_as_it_was(tmp_path, tiny):
    manager = RunManager(tmp_path / "runs")
    try:
        base = dict(optim=OptimConfig(batch_size=16, steps=8, warmup_steps=0), eval_every=6, checkpoint_every=0)
        early = manager.start(tiny(first_eval=2, **base))
        plain = manager.start(tiny(first_eval=0, **base))
        assert manager.wait(early, 120) == manager.wait(plain, 120) == "finished"
        store = manager.store
        assert val_steps(store, early) == [2, 6, 8]  # the early one, every 6, the final
        assert val_steps(store, plain) == [6, 8]
        final = {k: v for s, _, k, v, _ in store.metrics(early, "val") if s == 8}
        assert final == {k: v for s, _, k, v, _ in store.metrics(plain, "val") if s == 8}
        assert [r[3] for r in store.metrics(early, "train") if r[2] == "loss/detection"] == \
            [r[3] for r in store.metrics(plain, "train") if r[2] == "loss/detection"]
    finally:
        manager.shutdown()


def test_kept_validation_batches_score_as_the_split_read_again(tiny):
    from mtl_core.data import build_dataset
    from mtl_core.models import build_model
    from mtl_core.tasks import build_task
    from mtl_core.training.evaluation import evaluate, split_batches

    cfg = tiny()
    ds = build_dataset(cfg.data, "val", cfg.seed)
    tasks = {t: build_task(t, ds.info) for t in cfg.tasks}
    model = build_model(tasks, cfg.model).eval()
    kept = split_batches(ds, 16)
    assert kept is not None and sum(len(images) for images, _ in kept) == len(ds)
    device = torch.device("cpu")
    assert evaluate(model, tasks, ds, device, 16, batches=kept) == evaluate(model, tasks, ds, device, 16)


def test_a_split_too_large_to_keep_is_read_at_every_evaluation(tiny, monkeypatch):
    from mtl_core.data import build_dataset
    from mtl_core.training import evaluation

    ds = build_dataset(tiny().data, "val", 0)
    image, _ = ds[0]
    monkeypatch.setattr(evaluation, "KEEP_BYTES", len(ds) * image.numel() * image.element_size() - 1)
    assert evaluation.split_batches(ds, 16) is None
    monkeypatch.setattr(evaluation, "KEEP_BYTES", len(ds) * image.numel() * image.element_size())
    assert evaluation.split_batches(ds, 16) is not None
