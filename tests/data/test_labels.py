"""Per-task label budgets: a fixed labelled subset masked from the loss, symmetric label noise,
and loss scales, each an ordinary config field any run can use."""
from __future__ import annotations

import pytest
import torch

from mtl_core.config import DataConfig, ExperimentConfig
from mtl_core.data.base import DatasetInfo
from mtl_core.data.labels import apply_budget, labelled, scale_losses
from mtl_core.errors import ConfigError
from mtl_core.tasks import TASKS
from mtl_core.training.loop import masked_loss
from mtl_core.training.validation import check, validate

INFO = DatasetInfo("scenes", ("circle", "square", "triangle", "star"), 32, ("classification", "segmentation"), 4)


def tasks(*names: str) -> dict:
    return {n: TASKS.get(n)(INFO) for n in names}


def batch(n: int = 8) -> dict:
    return {"classification": torch.arange(n) % 4, "segmentation": torch.zeros(n, 32, 32, dtype=torch.long)}


def test_a_fraction_keeps_about_that_share_labelled_and_the_same_samples_every_time():
    idx = torch.arange(20_000)
    keep = labelled(3, "segmentation", 0.05, idx)
    assert 0.045 < keep.float().mean() < 0.055
    again = labelled(3, "segmentation", 0.05, idx.flip(0)).flip(0)  # another batch order: the same samples
    assert torch.equal(keep, again)
    assert not torch.equal(keep, labelled(4, "segmentation", 0.05, idx))  # another seed: another subset
    assert not torch.equal(keep, labelled(3, "classification", 0.05, idx))  # each task its own subset


def test_unlabelled_samples_drop_out_of_the_task_loss_only():
    data = DataConfig(label_fraction={"classification": 0.5})
    ts = tasks("classification", "segmentation")
    out = apply_budget(batch(64), torch.arange(64), ts, data, seed=0)
    valid = out["valid"]["classification"]
    assert 20 < int(valid.sum()) < 44 and "segmentation" not in out["valid"]
    logits = torch.zeros(64, 4)
    logits[valid, 0] = 50.0  # confidently wrong on every labelled sample whose class is not 0
    loss = masked_loss(ts["classification"], logits, out["classification"], valid)
    labels = out["classification"]
    want = torch.nn.functional.cross_entropy(logits[valid], labels[valid])
    assert torch.isclose(loss, want)
    # the unlabelled samples' logits get no gradient
    logits.requires_grad_(True)
    masked_loss(ts["classification"], logits, labels, valid).backward()
    assert float(logits.grad[~valid].abs().sum()) == 0.0 and float(logits.grad[valid].abs().sum()) > 0


def test_an_existing_mask_is_kept_and_narrowed():
    b = batch(16)
    b["valid"] = {"classification": torch.tensor([True] * 8 + [False] * 8)}
    out = apply_budget(b, torch.arange(16), tasks("classification"), DataConfig(label_fraction={"classification": 0.5}), 0)
    assert not bool(out["valid"]["classification"][8:].any())


def test_noise_one_replaces_every_label_with_a_uniform_class_and_noise_zero_none():
    n = 4000
    b = {"classification": torch.zeros(n, dtype=torch.long)}
    ts = tasks("classification")
    full = apply_budget(b, torch.arange(n), ts, DataConfig(label_noise={"classification": 1.0}), 0)["classification"]
    share = torch.bincount(full, minlength=4).float() / n
    assert torch.all((share - 0.25).abs() < 0.03)  # uniform over the 4 classes
    half = apply_budget(b, torch.arange(n), ts, DataConfig(label_noise={"classification": 0.5}), 0)["classification"]
    assert 0.33 < float((half != 0).float().mean()) < 0.42  # half flipped, a quarter of those back to class 0
    assert apply_budget(b, torch.arange(n), ts, DataConfig(), 0) is b


def test_loss_scale_multiplies_only_the_named_task():
    losses = {"classification": torch.tensor(2.0), "depth": torch.tensor(3.0)}
    out = scale_losses(losses, {"depth": 100.0})
    assert float(out["depth"]) == 300.0 and float(out["classification"]) == 2.0


@pytest.mark.parametrize("data, field", [
    ({"label_fraction": {"segmentation": 0.0}}, "data.label_fraction.segmentation"),
    ({"label_fraction": {"segmentation": 1.5}}, "data.label_fraction.segmentation"),
    ({"label_noise": {"classification": -0.1}}, "data.label_noise.classification"),
    ({"loss_scale": {"depth": 0.0}}, "data.loss_scale.depth"),
    ({"label_fraction": {"count": 0.5}}, "data.label_fraction.count"),  # not a selected task
    ({"label_noise": {"segmentation": 0.2}}, "data.label_noise.segmentation"),  # no single class per image
])
def test_bad_label_settings_name_the_field(data, field):
    cfg = ExperimentConfig.from_dict({"tasks": ["classification", "segmentation", "depth"], "data": data})
    errors = validate(cfg)
    assert any(e.field == field for e in errors), errors
    with pytest.raises(ConfigError):
        check(cfg)


def test_single_task_baselines_keep_their_task_s_settings_only():
    cfg = ExperimentConfig.from_dict({"tasks": ["classification", "segmentation"],
                                      "data": {"label_fraction": {"segmentation": 0.05}, "loss_scale": {"classification": 10}}})
    seg, = [b for b in cfg.single_task_baselines("r") if b.tasks == ("segmentation",)]
    cls, = [b for b in cfg.single_task_baselines("r") if b.tasks == ("classification",)]
    assert seg.data.label_fraction == {"segmentation": 0.05} and seg.data.loss_scale == {}
    assert cls.data.label_fraction == {} and cls.data.loss_scale == {"classification": 10.0}
    check(seg)
    check(cls)


def test_a_run_with_scarce_labels_trains_and_logs_the_scaled_loss(tmp_path):
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer

    cfg = ExperimentConfig.from_dict({
        "tasks": ["classification", "segmentation"],
        "data": {"image_size": 32, "train_size": 256, "val_size": 32, "test_size": 32,
                 "label_fraction": {"segmentation": 0.1}, "loss_scale": {"classification": 100}},
        "optim": {"steps": 3, "batch_size": 16, "warmup_steps": 0}, "eval_every": 3, "checkpoint_every": 0})
    store = RunStore(tmp_path)
    run_id = store.create_run(cfg.to_dict())
    Trainer(cfg, store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished"
    rows = store.metrics(run_id, split="train", key="loss/classification")
    assert rows and all(r[3] > 50 for r in rows)  # cross-entropy on 4 classes (~1.4) times 100
