"""Mixed precision: every weighting method and architecture trains under bf16 autocast (on the
CPU here; the same code runs on CUDA) with finite losses, gradients and weights."""
import dataclasses
import math

import pytest
import torch

from mtl_core.config import DataConfig, OptimConfig
from mtl_core.models import ARCHITECTURES
from mtl_core.store.store import RunStore
from mtl_core.training.builders import autocast_dtype, build_all, resolve_device
from mtl_core.training.loop import Trainer
from mtl_core.weighting import WEIGHTINGS, StepContext, build_weighting


@pytest.fixture(scope="module")
def batch():
    from tests.conftest import demo_config

    cfg = dataclasses.replace(demo_config(), data=DataConfig(image_size=32, train_size=8, val_size=1, test_size=1))
    built = build_all(cfg, ("train",))
    return cfg, built["datasets"]["train"].get_batch(list(range(8)))


def _rows(cfg, batch_data, method: str, rep_grad: bool):
    images, targets = batch_data
    built = build_all(cfg, ("val",))
    model, tasks = built["model"], built["tasks"]
    w = build_weighting(method, list(tasks), rep_grad=rep_grad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, rep = model.forward_train(images, rep_grad=rep_grad)
        losses = {t: task.loss(out[t], targets[t]).float() for t, task in tasks.items()}
    weights = w.combine(losses, model.shared_parameters(), StepContext(0, rep=rep))
    return losses, weights, model


@pytest.mark.parametrize("method", WEIGHTINGS.available())
def test_every_method_gives_finite_updates_under_bf16(batch, method):
    cfg, data = batch
    cls = WEIGHTINGS.get(method)
    modes = [False] + ([True] if cls.kind == "gradient" and cls.supports_rep else [])
    for rep_grad in modes:
        losses, weights, model = _rows(cfg, data, method, rep_grad)
        assert all(math.isfinite(float(v)) for v in losses.values())
        assert all(math.isfinite(v) for v in weights.values())
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", ARCHITECTURES.available())
def test_every_architecture_trains_under_bf16(tmp_path, demo, arch):
    cfg = dataclasses.replace(demo("pcgrad", arch), precision="bf16", gradstats_every=1,
                              optim=OptimConfig(batch_size=8, steps=2, warmup_steps=0),
                              data=DataConfig(image_size=32, train_size=16, val_size=8, test_size=8))
    store = RunStore(tmp_path)
    rid = store.create_run(cfg.to_dict(), "amp", "test", cfg.optim.steps)
    assert Trainer(cfg, store, rid).run() == "finished", store.get_run(rid)["error"]
    rows = store.metrics(rid, "train", "loss/")
    assert rows and all(v is not None and math.isfinite(v) for *_, v, _ in rows)
    val = {k: v for _, _, k, v, _ in store.metrics(rid, "val")}
    assert math.isfinite(val["segmentation/miou"]) and math.isfinite(val["depth/abs_rel"])


def test_precision_defaults():
    assert autocast_dtype("auto", torch.device("cpu")) is None  # fp32 on CPU unless asked
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
