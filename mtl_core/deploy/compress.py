"""Post-training compression of a finished run: int8 quantization and magnitude pruning.

- **int8 static quantization** in FX graph mode (``torch.ao.quantization.quantize_fx``): BatchNorm
  folded into the convolutions, per-channel int8 weights, activation ranges observed on a few
  training batches (calibration), for the x86 (fbgemm) CPU backend; the integer-arithmetic scheme
  of Jacob et al., "Quantization and Training of Neural Networks for Efficient
  Integer-Arithmetic-Only Inference" (CVPR 2018), as recommended by Krishnamoorthi, "Quantizing
  deep convolutional networks for efficient inference: A whitepaper" (arXiv 1806.08342, 2018).
  An architecture FX cannot trace (e.g. Python control flow over tensors) falls back to
  **dynamic** int8 quantization of its Linear layers only, and the result says so.
- **Magnitude pruning**: global unstructured L1 pruning (``torch.nn.utils.prune``) of every conv
  and linear weight, the smallest ``amount`` of them set to zero and the mask made permanent.
  The zeros are stored and multiplied like any weight: the model is NOT faster and its file is
  no smaller (only gzip shrinks); for a smaller, faster model use structured channel pruning
  (:mod:`mtl_core.models.channel_prune`). Han et al., "Learning both Weights and Connections for Efficient Neural Networks" (NeurIPS 2015).

Either way, a :class:`CompressionReport` puts size on disk, CPU latency at batch 1 and every
task's primary metric before and after side by side (``report.rows()`` is a list of dicts for
``pandas.DataFrame``). Files are written atomically to ``<run dir>/compressed/``: ``int8.ts``
(TorchScript, self-contained) or ``pruned-50.pt`` (a checkpoint :class:`~mtl_core.inference.predictor.Predictor`
loads), each with a JSON report beside it.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import statistics
import time
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from mtl_core.config import size_hw
from mtl_core.data import build_dataset
from mtl_core.deploy.export import export_torchscript
from mtl_core.errors import ConfigError, MTLError
from mtl_core.inference.predictor import INFER_LOCK, Predictor
from mtl_core.training.checkpoint import atomic_write_bytes, save_checkpoint
from mtl_core.training.evaluation import evaluate, iterate_batches

METHODS = ("int8", "int8-dynamic", "prune")
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
DEFAULT_BACKEND = "x86"  # fbgemm's successor on x86 CPUs; same kernels, better choice per op


# -- pruning ------------------------------------------------------------------------------
def prunable_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every conv and linear layer's weight (biases and norms are few and sensitive: left alone)."""
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def sparsity(model: nn.Module) -> float:
    """Fraction of the prunable weights that are exactly zero."""
    weights = [getattr(m, name) for m, name in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


def prune_global_l1(model: nn.Module, amount: float) -> float:
    """Zero the ``amount`` fraction of smallest-magnitude prunable weights, ranked across all layers
    at once (so layers with many small weights lose more), in place and permanently.
    Returns the resulting :func:`sparsity`."""
    if not 0.0 <= amount < 1.0:
        raise ConfigError("amount", f"must be in [0, 1), got {amount}; e.g. 0.5 zeroes half the weights")
    params = prunable_weights(model)
    if not params:
        raise MTLError("the model has no conv or linear layer to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    for module, name in params:
        prune.remove(module, name)  # fold weight_orig * weight_mask into a plain weight
    return sparsity(model)


# -- quantization -------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    """torch.ao.quantization announces its move to torchao on every call; the API still works in
    this torch, so keep those notices out of the user's console (real errors still raise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*(reduce_range|quantized tensor creation|quantize_per_tensor).*")
        # tracing an int8 graph reads its (constant) scales as Python floats; the saved file is
        # compared with the in-memory model right after, so a trace that went wrong still fails
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _use_engine(backend: str) -> None:
    engines = torch.backends.quantized.supported_engines
    if backend not in engines:
        raise ConfigError("backend", f"quantization backend {backend!r} is not in this torch build; use one of {engines}")
    # process-wide, and it must stay set: the packed int8 weights only run on the engine that packed them
    torch.backends.quantized.engine = backend


def quantize_int8(model: nn.Module, calibration: Iterable[Tensor], example: Tensor, static: bool = True,
                  backend: str = DEFAULT_BACKEND) -> tuple[nn.Module, str, str]:
    """An int8 copy of ``model`` (on the CPU): ``(quantized model, method, note)``.

    ``static``: FX graph mode static quantization calibrated on the ``calibration`` batches
    (float ``(B, 3, S, S)`` images); when FX cannot trace or run the model, dynamic quantization
    of the Linear layers instead, with ``note`` saying why. ``static=False`` asks for dynamic.
    """
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    model = copy.deepcopy(model).cpu().eval()
    note = "dynamic quantization was asked for: Linear layers int8, convolutions stay float32"
    with _quiet_quantization(), torch.no_grad():
        _use_engine(backend)
        if static:
            try:
                prepared = prepare_fx(model, get_default_qconfig_mapping(backend), (example,))
                seen = 0
                for images in calibration:
                    prepared(images)
                    seen += images.shape[0]
                quantized = convert_fx(prepared)
                quantized(example)  # an op with no int8 kernel fails here, not later on a page
                return quantized, f"int8 static (FX graph mode, {backend})", f"calibrated on {seen} training images"
            except Exception as e:  # FX raises TraceError, TypeError, NotImplementedError, RuntimeError ...
                first = (str(e).strip().splitlines() or [""])[0][:200]
                note = (f"FX graph mode could not quantize this model ({type(e).__name__}: {first}); fell back to "
                        "dynamic int8 of the Linear layers only, convolutions stay float32")
        quantized = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        return quantized, "int8 dynamic (Linear layers)", note


# -- measurements -------------------------------------------------------------------------
def state_dict_bytes(model: nn.Module) -> bytes:
    """The model's weights as ``torch.save`` writes them (what a checkpoint of it costs on disk)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


@torch.inference_mode()
def cpu_latency_ms(model: nn.Module, image_size: int | tuple[int, int], runs: int = 20, warmup: int = 3,
                   batch: int = 1) -> float:
    """Median wall time of one forward pass on images of ``image_size`` (one number for a square or
    ``(height, width)``) at batch ``batch`` (default 1), in milliseconds (median, not mean: a shared
    machine's hiccups do not move it), on the process's CPU threads: the thread count is
    process-wide state that a training run beside it relies on, so it is never changed here."""
    x = torch.rand(batch, 3, *size_hw(image_size), generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)
    model.eval()
    with INFER_LOCK:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


# -- report -------------------------------------------------------------------------------
@dataclass
class CompressionReport:
    """Before/after numbers of one compression; ``rows()`` for a table, ``to_dict()`` for JSON.

    Sizes are bytes of the saved state dict (dense; ``gzip_*`` is the same bytes deflated, where
    unstructured pruning's zeros show); latency is the median ms at batch 1 on one CPU thread.
    """

    requested: str
    method: str
    note: str
    checkpoint: str
    step: int
    amount: float | None = None
    sparsity_before: float | None = None
    sparsity: float | None = None
    size_before: int = 0
    size_after: int = 0
    gzip_before: int = 0
    gzip_after: int = 0
    latency_ms_before: float = float("nan")
    latency_ms_after: float = float("nan")
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    primary: dict[str, str] = field(default_factory=dict)  # task -> "<task>/<metric>"
    higher_is_better: dict[str, bool] = field(default_factory=dict)  # task -> direction
    eval_images: int = 0
    files: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """``measure, before, after, change (after - before), relative (after / before - 1)``."""
        def row(measure: str, before: float, after: float) -> dict[str, Any]:
            rel = after / before - 1 if before else float("nan")
            return {"measure": measure, "before": before, "after": after, "change": after - before, "relative": rel}

        out = [row("size on disk (bytes, state dict)", self.size_before, self.size_after),
               row("size gzipped (bytes)", self.gzip_before, self.gzip_after),
               row("CPU latency, batch 1 (ms)", self.latency_ms_before, self.latency_ms_after)]
        for task, key in self.primary.items():
            arrow = "↑" if self.higher_is_better.get(task, True) else "↓"
            out.append(row(f"{key} {arrow}", self.metrics_before.get(key, float("nan")),
                           self.metrics_after.get(key, float("nan"))))
        if self.sparsity is not None:
            out.append(row("zero weights (fraction of conv/linear)", self.sparsity_before or 0.0, self.sparsity))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


# -- a run's checkpoint --------------------------------------------------------------------
def _metrics(model: nn.Module, tasks: dict, dataset, limit: int | None) -> dict[str, float]:
    with _quiet_quantization():
        result = evaluate(model, tasks, dataset, torch.device("cpu"), limit=limit)
    return {k: v for k, v in result.items() if not k.startswith("loss/")}


def artifact_stem(method: str, amount: float | None = None) -> str:
    """``int8``, ``int8-dynamic`` or ``pruned-50`` (percent): the file names in ``compressed/``."""
    return f"pruned-{round(100 * float(amount or 0))}" if method == "prune" else method


def compress_checkpoint(checkpoint: str | os.PathLike, method: str = "int8", amount: float = 0.5,
                        out_dir: str | os.PathLike | None = None, calibration_batches: int = 4, batch_size: int = 16,
                        eval_limit: int | None = None, latency_runs: int = 20,
                        backend: str = DEFAULT_BACKEND) -> CompressionReport:
    """Compress a checkpoint with ``method`` (``int8``, ``int8-dynamic`` or ``prune`` at ``amount``),
    evaluate both models on the first ``eval_limit`` validation images (all when ``None``), and
    write the compressed model and its report to ``out_dir`` (default: ``compressed/`` beside the
    checkpoint)."""
    if method not in METHODS:
        raise ConfigError("method", f"unknown compression {method!r}; use one of: {', '.join(METHODS)}")
    predictor = Predictor(checkpoint)
    model, tasks, config = predictor.model, predictor.tasks, predictor.config
    out_dir = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / "compressed"
    stem = artifact_stem(method, amount)
    val = build_dataset(config, "val", config.seed)
    check_images, _ = next(iterate_batches(val, 4, limit=4))  # (4, 3, S, S)
    report = CompressionReport(requested=method, method="", note="", checkpoint=str(checkpoint), step=predictor.step,
                               primary={t: f"{t}/{task.primary}" for t, task in tasks.items()},
                               higher_is_better={t: task.higher_is_better for t, task in tasks.items()},
                               eval_images=min(len(val), eval_limit or len(val)))
    report.metrics_before = _metrics(model, tasks, val, eval_limit)

    if method == "prune":
        report.sparsity_before = sparsity(model)
        compressed = copy.deepcopy(model)
        report.amount = float(amount)
        report.sparsity = prune_global_l1(compressed, amount)
        report.method = "global unstructured L1 pruning (conv and linear weights)"
        report.note = f"{report.sparsity:.1%} of conv/linear weights are zero; stored dense, so only gzip shrinks"
        path = out_dir / f"{stem}.pt"
        save_checkpoint(path, config, predictor.step, compressed.state_dict(), {
            "info": {k: list(v) if isinstance(v, tuple) else v for k, v in predictor.info_dict().items()},
            "compression": json.dumps({"method": report.method, "amount": report.amount, "source": str(checkpoint)})})
    else:
        train = build_dataset(config, "train", config.seed)
        calibration = (images for images, _ in iterate_batches(train, batch_size, limit=calibration_batches * batch_size))
        compressed, report.method, report.note = quantize_int8(model, calibration, check_images[:1],
                                                               static=(method == "int8"), backend=backend)
        path = out_dir / f"{stem}.ts"
        with _quiet_quantization():
            exported = export_torchscript(compressed, path, check_images, metadata={
                "config": config.to_dict(), "step": predictor.step, "compression": report.method,
                "image_size": config.to_dict()["data"]["image_size"], "class_names": list(predictor.info.class_names)})
        if not exported.ok:
            raise MTLError(f"the saved int8 TorchScript differs from the quantized model by {exported.worst_diff:.3g}")
    report.files["model"] = str(path)
    report.metrics_after = _metrics(compressed, tasks, val, eval_limit)

    before, after = state_dict_bytes(model), state_dict_bytes(compressed)
    report.size_before, report.size_after = len(before), len(after)
    report.gzip_before, report.gzip_after = len(zlib.compress(before, 6)), len(zlib.compress(after, 6))
    size = predictor.input_size
    with _quiet_quantization():
        report.latency_ms_before = cpu_latency_ms(model, size, latency_runs)
        report.latency_ms_after = cpu_latency_ms(compressed, size, latency_runs)
    report_path = out_dir / f"{stem}.json"
    report.files["report"] = str(report_path)
    atomic_write_bytes(report_path, json.dumps(report.to_dict(), indent=2).encode())
    return report


def compress_run(store, run_id: str, method: str = "int8", amount: float = 0.5, **kwargs: Any) -> CompressionReport:
    """:func:`compress_checkpoint` of a run's chosen checkpoint (``RunStore.chosen_checkpoint``)
    into ``<run dir>/compressed/``."""
    ck = store.chosen_checkpoint(run_id)
    if ck is None:
        raise MTLError(f"run {run_id} has no checkpoint yet; compress it once it has trained")
    return compress_checkpoint(ck["path"], method, amount, out_dir=store.run_dir(run_id) / "compressed", **kwargs)


def compressed_reports(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The reports of a run's compressed models (newest first), as written by :func:`compress_checkpoint`."""
    folder = Path(run_dir) / "compressed"
    reports = []
    for p in sorted(folder.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            saved = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a report being replaced right now; the next read sees it
        if saved.get("requested") in METHODS:  # channel pruning's tables (mtl_core.deploy.structured) are listed apart
            reports.append(saved)
    return reports
