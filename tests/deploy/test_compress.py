"""Compression of a finished run: int8 quantization and magnitude pruning, as a user sees them."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mtl_core.config import DataConfig, ExperimentConfig, ModelConfig, OptimConfig
from mtl_core.deploy.compress import compress_checkpoint, compress_run, prunable_weights, prune_global_l1
from mtl_core.errors import ConfigError

# int8 rounding may flip a few borderline pixels, boxes or images: primary metrics of the int8
# model stay within this (absolute) of the float model's on the 64 validation images
INT8_METRIC_TOLERANCE = 0.05


def tiny_run_config(**overrides) -> ExperimentConfig:
    cfg = ExperimentConfig(
        name="compress", tasks=("classification", "segmentation", "detection"),
        data=DataConfig(image_size=32, train_size=256, val_size=64, test_size=32),
        optim=OptimConfig(batch_size=16, steps=30, warmup_steps=0),
        eval_every=1000, checkpoint_every=1000, device="cpu")
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from mtl_core.runs.manager import RunManager

    manager = RunManager(tmp_path_factory.mktemp("compress") / "runs", max_concurrent=1)
    rid = manager.start(tiny_run_config())
    try:
        assert manager.wait(rid, 300) == "finished"
        yield manager.store, rid
    finally:
        manager.shutdown()


def test_int8_model_is_smaller_and_scores_like_the_float_model(run):
    from mtl_core.deploy.export import load_torchscript
    from mtl_core.tasks import build_task
    from mtl_core.training.evaluation import evaluate

    store, rid = run
    report = compress_run(store, rid, "int8", latency_runs=5)
    assert report.method.startswith("int8 static (FX graph mode")
    assert report.size_after < 0.5 * report.size_before  # int8 weights: about a quarter of float32
    for key in report.primary.values():
        assert abs(report.metrics_after[key] - report.metrics_before[key]) <= INT8_METRIC_TOLERANCE, key
    assert report.latency_ms_before > 0 and report.latency_ms_after > 0

    # the table a page shows: size, gzip, latency, then one row per task's primary metric
    table = pd.DataFrame(report.rows())
    assert list(table["measure"][:3]) == ["size on disk (bytes, state dict)", "size gzipped (bytes)",
                                          "CPU latency, batch 1 (ms)"]
    assert {"classification/accuracy ↑", "segmentation/miou ↑", "detection/map50 ↑"} <= set(table["measure"])
    assert table.loc[0, "after"] == report.size_after and table.loc[0, "relative"] < -0.5

    # both files are in the run's folder; the TorchScript file is the model that was scored
    folder = store.run_dir(rid) / "compressed"
    assert Path(report.files["model"]) == folder / "int8.ts" and Path(report.files["report"]) == folder / "int8.json"
    saved = json.loads((folder / "int8.json").read_text())
    assert saved["size_after"] == report.size_after and saved["metrics_after"] == report.metrics_after
    model, meta = load_torchscript(folder / "int8.ts")
    config = ExperimentConfig.from_dict(meta["config"])
    from mtl_core.data import build_dataset

    val = build_dataset(config.data, "val", config.seed)
    tasks = {t: build_task(t, val.info) for t in config.tasks}
    reloaded = evaluate(model, tasks, val, torch.device("cpu"))
    for key in report.primary.values():
        assert reloaded[key] == pytest.approx(report.metrics_after[key], abs=1e-9), key


def test_pruning_half_zeroes_the_smallest_half_of_the_weights(run):
    from mtl_core.inference.predictor import Predictor

    store, rid = run
    original = Predictor(store.latest_checkpoint(rid)["path"]).model
    report = compress_run(store, rid, "prune", amount=0.5, latency_runs=3)
    assert Path(report.files["model"]).name == "pruned-50.pt"
    pruned = Predictor(report.files["model"]).model  # a plain checkpoint: loads like any run's

    before = torch.cat([getattr(m, n).detach().reshape(-1) for m, n in prunable_weights(original)])
    after = torch.cat([getattr(m, n).detach().reshape(-1) for m, n in prunable_weights(pruned)])
    zeroed = after == 0
    assert int((before == 0).sum()) == 0
    assert int(zeroed.sum()) == round(0.5 * before.numel())  # global: exactly half of all of them
    assert report.sparsity == pytest.approx(0.5, abs=1 / before.numel())
    # L1: every removed weight was no larger than every kept one; kept weights are untouched
    assert before[zeroed].abs().max() <= before[~zeroed].abs().min()
    assert torch.equal(after[~zeroed], before[~zeroed])
    # zeros do not shrink a dense file, but they compress
    assert report.size_after == pytest.approx(report.size_before, rel=0.01)
    assert report.gzip_after < 0.8 * report.gzip_before
    assert pd.DataFrame(report.rows()).iloc[-1]["after"] == report.sparsity


def test_prune_amount_outside_0_to_1_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ConfigError, match="amount"):
        prune_global_l1(model, 1.5)


def test_architecture_fx_cannot_trace_falls_back_to_dynamic_linear_quantization(tmp_path):
    """Cross-stitch turns a traced tensor into a Python list (unbind), which FX cannot trace: the
    result falls back and says so."""
    from mtl_core.training.builders import build_all
    from mtl_core.training.checkpoint import save_checkpoint

    cfg = tiny_run_config(model=ModelConfig(architecture="cross_stitch"), tasks=("classification", "segmentation"),
                          data=DataConfig(image_size=32, train_size=32, val_size=16))
    model = build_all(cfg, splits=("val",))["model"]
    path = save_checkpoint(tmp_path / "final.pt", cfg, 0, model.state_dict())
    report = compress_checkpoint(path, "int8", latency_runs=2, calibration_batches=1)
    assert report.method == "int8 dynamic (Linear layers)"
    assert "FX graph mode could not quantize" in report.note and "convolutions stay float32" in report.note
    assert report.size_after < report.size_before  # only the Linear layers shrank
    assert report.size_after > 0.5 * report.size_before
    assert (tmp_path / "compressed" / "int8.ts").is_file()


def test_cli_compress_prints_the_table_and_writes_the_files(run, capsys):
    from mtl_core.cli import main

    store, rid = run
    code = main(["compress", rid, "--method", "prune", "--amount", "0.3", "--runs-dir", str(store.root),
                 "--eval-limit", "16"])
    out = capsys.readouterr().out
    assert code == 0
    assert "size gzipped (bytes)" in out and "classification/accuracy" in out
    assert (store.run_dir(rid) / "compressed" / "pruned-30.pt").is_file()
    assert main(["compress", rid, "--method", "prune", "--amount", "2", "--runs-dir", str(store.root)]) == 2
    assert "amount" in capsys.readouterr().err


def test_latency_is_timed_on_images_of_the_runs_height_and_width():
    from mtl_core.deploy.compress import cpu_latency_ms

    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x

    assert cpu_latency_ms(Recorder(), (24, 40), runs=1, warmup=0, batch=2) >= 0
    assert cpu_latency_ms(Recorder(), 32, runs=1, warmup=0) >= 0
    assert seen == [(2, 3, 24, 40), (1, 3, 32, 32)]
