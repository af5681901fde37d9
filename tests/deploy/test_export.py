"""Export to TorchScript and ONNX: the exported file computes what the PyTorch model computes."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from mtl_core.config import DataConfig, ExperimentConfig
from mtl_core.deploy.export import (
    export_checkpoint,
    export_onnx,
    export_run,
    export_torchscript,
    flatten_outputs,
    load_torchscript,
    unflatten_outputs,
)
from mtl_core.errors import MTLError

TASKS = ("classification", "segmentation", "detection", "depth")
FLAT_NAMES = ["classification", "segmentation", "detection.heatmap", "detection.size", "detection.offset", "depth"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with a checkpoint of a freshly initialised model (export needs no training)."""
    from mtl_core.store.store import RunStore
    from mtl_core.training.builders import build_all
    from mtl_core.training.checkpoint import save_checkpoint

    cfg = ExperimentConfig(tasks=TASKS, data=DataConfig(image_size=32, train_size=16, val_size=8), device="cpu")
    store = RunStore(tmp_path_factory.mktemp("export") / "runs")
    rid = store.create_run(cfg.to_dict(), "export", "test", 0, status="finished")
    model = build_all(cfg, splits=("val",))["model"]
    path = save_checkpoint(store.run_dir(rid) / "final.pt", cfg, 0, model.state_dict())
    store.add_checkpoint(rid, 0, str(path), "final")
    return store, rid


def _model(store, rid) -> nn.Module:
    from mtl_core.inference.predictor import Predictor

    return Predictor(store.latest_checkpoint(rid)["path"]).model


def _fresh_images(n: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(7))  # not the images the check used


def test_flatten_names_nested_outputs_and_unflatten_restores_them():
    heat, size = torch.ones(1), torch.zeros(2)
    nested = {"classification": torch.ones(3), "detection": {"heatmap": heat, "size": size}}
    flat = flatten_outputs(nested)
    assert list(flat) == ["classification", "detection.heatmap", "detection.size"] and flat["detection.size"] is size
    assert unflatten_outputs(flat)["detection"]["heatmap"] is heat


def test_torchscript_round_trip_matches_pytorch(run, tmp_path):
    store, rid = run
    out = tmp_path / "model.pt"
    result = export_run(store, rid, "torchscript", out)
    assert result.ok is True and result.output_names == FLAT_NAMES
    assert set(result.max_abs_diff) == set(FLAT_NAMES) and result.worst_diff <= result.tolerance
    assert result.bytes == out.stat().st_size > 0 and result.samples == 4

    loaded, meta = load_torchscript(out)
    assert meta["output_names"] == FLAT_NAMES and meta["image_size"] == 32
    images = _fresh_images(3)
    with torch.no_grad():
        want, got = flatten_outputs(_model(store, rid)(images)), flatten_outputs(loaded(images))
    for name in FLAT_NAMES:
        torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_onnx_round_trip_matches_pytorch(run, tmp_path, dynamo):
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install onnx onnxruntime onnxscript); "
                    "the export is written but cannot be checked")
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("the dynamo-based ONNX exporter needs onnxscript (pip install onnxscript)")
    import onnxruntime as ort

    store, rid = run
    out = tmp_path / "model.onnx"
    result = export_run(store, rid, "onnx", out, dynamo=dynamo)
    assert result.ok is True and result.output_names == FLAT_NAMES
    assert result.checked_with.startswith("onnxruntime") and result.worst_diff <= result.tolerance
    # independently of the exporter's own check: a batch of 5 new images through ONNX Runtime
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == FLAT_NAMES
    images = _fresh_images(5)
    got = dict(zip(FLAT_NAMES, session.run(FLAT_NAMES, {"images": images.numpy()}), strict=True))
    with torch.no_grad():
        want = flatten_outputs(_model(store, rid)(images))
    for name in FLAT_NAMES:
        torch.testing.assert_close(torch.from_numpy(got[name]), want[name], atol=1e-4, rtol=0)


class _BranchOnData(nn.Module):
    """Python control flow on tensor values: a trace freezes the branch it saw."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scale = 2.0 if float(x.mean()) > 0.5 else 1.0
        return {"classification": x.mean(dim=(1, 2, 3))[:, None] * scale}  # (B, 1)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_the_check_reports_an_export_that_does_not_match(tmp_path):
    images = torch.cat([torch.zeros(1, 3, 8, 8), torch.ones(2, 3, 8, 8)])  # traced on the zeros: scale 1
    result = export_torchscript(_BranchOnData(), tmp_path / "branchy.pt", images)
    # the whole batch has mean 2/3 > 0.5, so PyTorch scales the ones by 2 where the trace keeps 1
    assert result.ok is False and result.max_abs_diff["classification"] == pytest.approx(1.0)
    assert "DOES NOT match" in result.summary()


def test_onnx_export_without_onnxruntime_is_written_but_not_checked(monkeypatch, tmp_path):
    if importlib.util.find_spec("onnx") is None:
        pytest.skip("ONNX export itself needs the onnx package (pip install onnx)")
    import mtl_core.deploy.export as export

    monkeypatch.setattr(export, "onnxruntime_available", lambda: False)
    model = nn.Sequential(nn.Conv2d(3, 2, 3))
    wrapped = _DictOut(model)
    result = export_onnx(wrapped, tmp_path / "m.onnx", torch.rand(2, 3, 8, 8), dynamo=False)
    assert result.ok is None and "onnxruntime is not installed" in result.checked_with
    assert (tmp_path / "m.onnx").stat().st_size == result.bytes > 0


class _DictOut(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"segmentation": self.model(x)}


def test_int8_torchscript_and_unknown_formats_are_refused_with_a_reason(tmp_path):
    with pytest.raises(MTLError, match="already TorchScript"):
        export_checkpoint(tmp_path / "int8.ts", "onnx", tmp_path / "x.onnx")
    with pytest.raises(MTLError, match="onnx, torchscript"):
        export_checkpoint(tmp_path / "final.pt", "tflite", tmp_path / "x.tflite")


def test_cli_export_writes_the_file_and_reports_the_match(run, tmp_path, capsys):
    from mtl_core.cli import main

    store, rid = run
    out = tmp_path / "cli.pt"
    code = main(["export", rid, "--format", "torchscript", "--out", str(out), "--runs-dir", str(store.root),
                 "--samples", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "matches PyTorch on 2 images" in printed and "detection.heatmap" in printed


def test_a_height_by_width_run_exports_at_its_size(tmp_path):
    """The traced input is the run's (H, W); the metadata says the size as the config writes it
    and how a photo of another shape is brought to it."""
    from mtl_core.training.builders import build_all
    from mtl_core.training.checkpoint import save_checkpoint

    cfg = ExperimentConfig(tasks=TASKS, data=DataConfig(image_size=(32, 48), train_size=16, val_size=8), device="cpu")
    path = save_checkpoint(tmp_path / "final.pt", cfg, 0, build_all(cfg, splits=("val",))["model"].state_dict())
    result = export_checkpoint(path, "torchscript", tmp_path / "wide.pt", samples=2)
    assert result.ok is True
    loaded, meta = load_torchscript(tmp_path / "wide.pt")
    assert meta["image_size"] == [32, 48] and meta["resize"] == "stretch"
    with torch.no_grad():
        out = loaded(torch.rand(1, 3, 32, 48))
    assert out["segmentation"].shape[-2:] == (8, 12)  # the default backbone's stride 4, on both sides
