"""Structured channel pruning: a genuinely smaller model, the same task outputs, saved and reloaded."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig
from mtl_core.errors import ConfigError
from mtl_core.models import ARCHITECTURES
from mtl_core.models.channel_prune import SUPPORTED, multiply_adds, parameter_count, prune_channels
from mtl_core.training.builders import build_all

TASKS = ("classification", "segmentation", "detection", "depth")


def tiny_config(**overrides) -> ExperimentConfig:
    cfg = ExperimentConfig(name="channels", tasks=TASKS, seed=3,
                           data=DataConfig(image_size=32, train_size=32, val_size=16, test_size=8),
                           model=ModelConfig(width=8), optim=OptimConfig(batch_size=8, steps=2, warmup_steps=0),
                           device="cpu")
    return dataclasses.replace(cfg, **overrides)


def build(cfg: ExperimentConfig) -> nn.Module:
    return build_all(cfg, ("val",))["model"].eval()


def shapes(outputs):
    return {k: shapes(v) if isinstance(v, dict) else tuple(v.shape) for k, v in outputs.items()}


IMAGES = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # (2, 3, 32, 32)


@pytest.mark.parametrize("arch", ARCHITECTURES.available())
def test_every_architecture_is_pruned_with_its_outputs_kept_or_refused_by_name(arch):
    model = build(tiny_config(model=ModelConfig(architecture=arch, width=8)))
    with torch.no_grad():
        before = shapes(model(IMAGES))
    if arch not in SUPPORTED:
        with pytest.raises(ConfigError) as e:
            prune_channels(model, 0.5, IMAGES)
        assert e.value.field == "model.architecture" and arch in str(e.value) and "hard_sharing" in str(e.value)
        return
    params, macs = parameter_count(model), multiply_adds(model, 32)
    prune_channels(model, 0.5, IMAGES)
    with torch.no_grad():
        assert shapes(model(IMAGES)) == before  # every task's output (and detection's parts) as before
    assert parameter_count(model) < 0.6 * params and multiply_adds(model, 32) < 0.6 * macs


@pytest.mark.parametrize("backbone", ["small_cnn_s4", "small_cnn"])
def test_half_the_backbone_channels_go_and_the_heads_outputs_stay(backbone):
    model = build(tiny_config(model=ModelConfig(backbone=backbone, width=8)))
    head_outputs = {t: [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
                        for m in h.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
                    for t, h in model.heads.items()}
    stem = model.backbone.stem[0].out_channels
    params = parameter_count(model)
    prune_channels(model, 0.5, IMAGES)
    assert model.backbone.stem[0].out_channels == stem // 2  # the same share of every layer
    assert model.heads["segmentation"][0].in_channels == model.backbone.fuse1[0].out_channels == 8  # 16 -> 8
    for t, h in model.heads.items():  # each head's last layer is as wide as before
        last = [m for m in h.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
        assert (last.out_channels if isinstance(last, nn.Conv2d) else last.out_features) == head_outputs[t]
    assert parameter_count(model) < params / 2


def test_group_norm_layers_are_pruned_in_whole_groups():
    """GroupNorm (model.norm = group) has gcd(8, C) groups: Torch-Pruning removes channels from every
    group alike, so a layer of 8 channels in 8 groups keeps them all, and one of 16 loses half."""
    model = build(tiny_config(model=ModelConfig(width=8, norm="group")))
    with torch.no_grad():
        before = shapes(model(IMAGES))
    params = parameter_count(model)
    prune_channels(model, 0.5, IMAGES)
    assert model.backbone.stem[0].out_channels == 8 and model.backbone.fuse1[0].out_channels == 8  # 8 -> 8, 16 -> 8
    with torch.no_grad():
        assert shapes(model(IMAGES)) == before
    assert parameter_count(model) < 0.4 * params


def test_removing_channels_that_are_exactly_zero_leaves_the_outputs_unchanged():
    model = build(tiny_config())
    conv, bn = model.backbone.stem[0], model.backbone.stem[1]
    with torch.no_grad():  # channels 2 and 5 of the stem give exactly 0 after BN and ReLU
        for c in (2, 5):
            conv.weight[c] = 0
            bn.weight[c], bn.bias[c] = 0, 0
        before = model(IMAGES)
    scores = torch.ones(8)
    scores[[2, 5]] = 0
    prune_channels(model, 0.25, IMAGES, importance={"backbone.stem.0": scores})  # 2 of 8, that layer only
    assert conv.out_channels == 6 and bn.num_features == 6
    assert model.backbone.down1.conv1[0].in_channels == 6 and model.backbone.fuse1[0].out_channels == 16  # untouched
    with torch.no_grad():
        after = model(IMAGES)
    for t in ("classification", "segmentation", "depth"):
        torch.testing.assert_close(after[t], before[t], atol=1e-5, rtol=0)
    for part, value in before["detection"].items():
        torch.testing.assert_close(after["detection"][part], value, atol=1e-5, rtol=0)


def test_bad_amount_and_importance_name_the_field():
    model = build(tiny_config())
    with pytest.raises(ConfigError, match="prune_channels"):
        prune_channels(model, 1.0, IMAGES)
    with pytest.raises(ConfigError, match="importance"):
        prune_channels(model, 0.5, IMAGES, importance="entropy")
    with pytest.raises(ConfigError, match="taylor importance needs a loss"):
        prune_channels(model, 0.5, IMAGES, importance="taylor")


def test_multiply_adds_and_parameters_by_hand():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))  # (1, 5)

    # conv: 32*32 outputs x 4 filters x 3*3*3 weights; linear: 4*5
    assert multiply_adds(Tiny(), 32) == 32 * 32 * 4 * 27 + 4 * 5
    assert parameter_count(Tiny()) == 4 * 27 + 4 + 4 * 5 + 5


# -- a checkpoint pruned, fine-tuned, saved, reloaded, exported ------------------------------------
@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    from mtl_core.deploy.structured import prune_checkpoint
    from mtl_core.training.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("channels")
    cfg = tiny_config()
    model = build_all(cfg, ("val",))["model"]
    ck = save_checkpoint(d / "final.pt", cfg, 2, model.state_dict())
    report = prune_checkpoint(ck, 0.5, finetune_steps=3, eval_limit=8, latency_runs=1, calibration_batches=1)
    return ck, model.eval(), report


def test_the_table_counts_four_models_and_the_pruned_ones_are_smaller(pruned):
    _, original, report = pruned
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == ["original", "channel-pruned", "fine-tuned", "int8"]
    assert rows["original"]["parameters"] == parameter_count(original)
    assert rows["original"]["multiply-adds"] == multiply_adds(original, 32)
    assert rows["channel-pruned"]["parameters"] < 0.5 * rows["original"]["parameters"]
    assert rows["channel-pruned"]["multiply-adds"] < 0.5 * rows["original"]["multiply-adds"]
    assert rows["fine-tuned"]["parameters"] == rows["int8"]["parameters"] == rows["channel-pruned"]["parameters"]
    assert rows["channel-pruned"]["size (bytes)"] < 0.5 * rows["original"]["size (bytes)"]
    # int8 weights are a quarter of float32; on a model this tiny the per-tensor scales and names weigh too
    assert rows["int8"]["size (bytes)"] < 0.7 * rows["fine-tuned"]["size (bytes)"]
    for r in rows.values():
        assert r["latency b1 (ms)"] > 0 and r["latency b32 (ms)"] > 0
        for key in ("classification/accuracy", "segmentation/miou", "detection/map50", "depth/abs_rel"):
            assert not math.isnan(r[key]), (r["model"], key)
    assert len(report["finetune_losses"]) == 3 and report["spec"]["history"]


def test_the_saved_pruned_model_loads_in_predict_with_the_same_outputs(pruned):
    from mtl_core.deploy.finetune import finetune
    from mtl_core.inference.predictor import Predictor
    from mtl_core.training.checkpoint import load_checkpoint

    ck, _, report = pruned
    loaded = Predictor(report["files"]["model"])  # built from the config, the history replayed, weights loaded
    assert parameter_count(loaded.model) == report["rows"][2]["parameters"]
    # the same pruning and fine-tune again give the same weights (seeded data order, no global RNG)
    cfg = tiny_config()
    built = build_all(cfg, ("train",))
    prune_again = built["model"]
    prune_again.load_state_dict(load_checkpoint(ck)["model"])
    prune_channels(prune_again, 0.5, IMAGES)
    finetune(prune_again, cfg, built["tasks"], built["datasets"]["train"], 3)
    with torch.no_grad():
        a, b = loaded.model(IMAGES), prune_again.eval()(IMAGES)
    for t in ("classification", "segmentation", "depth"):
        torch.testing.assert_close(a[t], b[t], atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_the_pruned_model_exports_and_matches_pytorch(pruned, fmt, tmp_path):
    from mtl_core.deploy.export import export_checkpoint

    _, _, report = pruned
    result = export_checkpoint(report["files"]["model"], fmt, tmp_path / f"m.{fmt}", samples=3)
    assert result.ok is not False and result.worst_diff <= 1e-4
    assert {n.split(".")[0] for n in result.output_names} == set(TASKS)


def test_the_int8_model_after_pruning_is_a_loadable_torchscript_file(pruned):
    from mtl_core.deploy.export import load_torchscript

    _, _, report = pruned
    model, meta = load_torchscript(report["files"]["int8"])
    assert "after channels-50" in meta["compression"]
    float_model = build(tiny_config())
    with torch.no_grad():
        assert shapes(model(IMAGES)) == shapes(float_model(IMAGES))


def test_taylor_and_a_callable_importance_choose_other_channels_than_magnitude():
    from mtl_core.data import build_dataset
    from mtl_core.tasks import build_task
    from mtl_core.training.evaluation import iterate_batches

    cfg = tiny_config()
    train = build_dataset(cfg.data, "train", cfg.seed)
    images, targets = next(iterate_batches(train, 8, limit=8))
    tasks = {t: build_task(t, train.info) for t in cfg.tasks}

    def loss_fn(m):
        out = m(images)
        return sum(task.loss(out[t], task.target_of(targets)[0]) for t, task in tasks.items())

    kept = {}
    for name, imp in (("magnitude", None), ("taylor", "taylor"), ("first", lambda group: -torch.arange(
            len(group[0][1]), dtype=torch.float32))):  # the last channels score lowest: they go
        model = build(cfg)
        prune_channels(model, 0.5, IMAGES, imp, loss_fn=loss_fn)
        kept[name] = {n: idxs for n, out, idxs in model.pruning_history if out}
    assert kept["taylor"] != kept["magnitude"]
    assert kept["first"]["backbone.stem.0"] == [4, 5, 6, 7]  # removed: the last half of the stem's 8


def test_a_height_by_width_run_is_pruned_saved_and_loaded_at_its_size(tmp_path):
    """Tracing, replaying the pruning and counting multiply-adds all use the run's (H, W)."""
    from mtl_core.deploy.structured import prune_checkpoint
    from mtl_core.inference.predictor import Predictor
    from mtl_core.training.checkpoint import save_checkpoint

    cfg = tiny_config(data=DataConfig(image_size=(32, 48), train_size=32, val_size=16, test_size=8))
    model = build(cfg)
    ck = save_checkpoint(tmp_path / "final.pt", cfg, 2, model.state_dict())
    report = prune_checkpoint(ck, 0.5, eval_limit=4, latency_runs=1, int8=False)
    assert report["spec"]["image_size"] == [32, 48]
    rows = {r["model"]: r for r in report["rows"]}
    assert rows["original"]["multiply-adds"] == multiply_adds(model, (32, 48))
    loaded = Predictor(report["files"]["model"])  # the history replayed on a (1, 3, 32, 48) trace
    assert parameter_count(loaded.model) == rows["channel-pruned"]["parameters"]
    preds, _ = loaded.predict(torch.randint(0, 256, (3, 40, 90), dtype=torch.uint8))
    assert preds["segmentation"]["mask"].shape == (40, 90)
