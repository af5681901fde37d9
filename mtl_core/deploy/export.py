"""Export a trained (or pruned) multi-task model to ONNX or TorchScript, checked against PyTorch.

ONNX (the Open Neural Network Exchange format, https://onnx.ai) is written with
``torch.onnx.export`` (the ``torch.export``-based exporter when ``onnxscript`` is installed,
the TorchScript-based one otherwise) and checked with ONNX Runtime when it is installed;
TorchScript is written with ``torch.jit.trace`` and checked by loading it back. The check
runs the exported file and the PyTorch model on a few validation images, at batch 1 and at a
larger batch (so a batch size baked into the trace is caught), and reports every output's
largest absolute difference.

The model's nested dict outputs become flat named outputs: ``"classification"``,
``"segmentation"``, ``"detection.heatmap"``, ``"detection.size"``, ``"detection.offset"`` ...
(``FlatOutputs``); the input is ``images``, float ``(B, 3, H, W)`` in ``[0, 1]`` at the run's
image size (``H x W``; the metadata's ``image_size`` is one number for a square, else
``[height, width]``, as the config writes it), batch dimension dynamic. A photo of another shape
is brought to it as :class:`~mtl_core.inference.predictor.Predictor` does (the metadata's
``resize``).
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtl_core.data import build_dataset
from mtl_core.errors import MTLError
from mtl_core.inference.predictor import Predictor
from mtl_core.training.checkpoint import atomic_write_bytes
from mtl_core.training.evaluation import iterate_batches

FORMATS = ("onnx", "torchscript")
DEFAULT_TOLERANCE = 1e-4  # float32 exports differ from eager PyTorch by ~1e-6 on these models
ONNX_OPSET = 18
METADATA_FILE = "mtl_studio.json"  # TorchScript extra file: config, output names, input size


# -- named outputs ----------------------------------------------------------------------
def flatten_outputs(outputs: dict[str, Any]) -> dict[str, Tensor]:
    """``{"detection": {"heatmap": t}}`` -> ``{"detection.heatmap": t}``; tensors stay as they are."""
    flat: dict[str, Tensor] = {}
    for name, value in outputs.items():
        if isinstance(value, dict):
            for key, sub in flatten_outputs(value).items():
                flat[f"{name}.{key}"] = sub
        else:
            flat[name] = value
    return flat


def unflatten_outputs(flat: dict[str, Tensor]) -> dict[str, Any]:
    """Inverse of :func:`flatten_outputs`: the model's nested dict, for the tasks' decode and metrics."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


class FlatOutputs(nn.Module):
    """Wraps a multi-task model so ``forward`` returns flat named outputs: a ``dict`` (TorchScript
    traces one dict type only, ``Dict[str, Tensor]``) or, with ``as_tuple``, a tuple in
    :attr:`names` order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, names: Sequence[str] = (), as_tuple: bool = False) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.as_tuple = as_tuple

    def forward(self, images: Tensor):  # (B, 3, S, S)
        flat = flatten_outputs(self.model(images))
        if self.as_tuple:
            return tuple(flat[n] for n in self.names)
        return flat


class NestedOutputs(nn.Module):
    """The inverse wrapper: an exported module with flat outputs (e.g. a loaded TorchScript
    file) behaving like the original model, so :func:`mtl_core.training.evaluation.evaluate` can score it."""

    def __init__(self, flat_model: nn.Module) -> None:
        super().__init__()
        self.flat_model = flat_model

    def forward(self, images: Tensor) -> dict[str, Any]:
        return unflatten_outputs(dict(self.flat_model(images)))


@torch.no_grad()
def output_names(model: nn.Module, example: Tensor) -> list[str]:
    """The flat output names of ``model`` for an input like ``example``."""
    return list(flatten_outputs(model(example)))


# -- result -------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What was written and how closely it matches PyTorch.

    ``ok`` is ``None`` when the file could not be checked (ONNX Runtime not installed).
    """

    path: str
    format: str
    bytes: int
    output_names: list[str]
    exporter: str
    checked_with: str
    samples: int = 0
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    ok: bool | None = None

    @property
    def worst_diff(self) -> float:
        return max(self.max_abs_diff.values(), default=float("nan"))

    def summary(self) -> str:
        if self.ok is None:
            verdict = f"not checked ({self.checked_with})"
        else:
            verdict = (f"{'matches' if self.ok else 'DOES NOT match'} PyTorch on {self.samples} images: "
                       f"max abs diff {self.worst_diff:.2e} (tolerance {self.tolerance:g}, {self.checked_with})")
        return f"{self.format} written to {self.path} ({self.bytes} bytes, {self.exporter}); {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _compare(reference: dict[str, Tensor], got: dict[str, Tensor], diffs: dict[str, float]) -> None:
    for name, ref in reference.items():
        if name not in got:
            raise MTLError(f"the exported model has no output {name!r}; it has {sorted(got)}")
        d = float((got[name].float() - ref.float()).abs().max()) if ref.numel() else 0.0
        diffs[name] = max(diffs.get(name, 0.0), d)


def _check_batches(images: Tensor) -> list[Tensor]:
    """Batch 1 and the whole batch (when larger): two batch sizes exercise the dynamic batch axis."""
    return [images[:1]] + ([images] if images.shape[0] > 1 else [])


# -- TorchScript ----------------------------------------------------------------------------
def export_torchscript(model: nn.Module, path: str | os.PathLike, images: Tensor,
                       tolerance: float = DEFAULT_TOLERANCE, metadata: dict[str, Any] | None = None) -> ExportResult:
    """Trace ``model`` (eval mode) on ``images[:1]``, save it atomically to ``path`` (with a
    ``mtl_studio.json`` extra file holding ``metadata`` and the output names), load it back and
    compare it with ``model`` on ``images`` (float ``(N, 3, S, S)`` in ``[0, 1]``)."""
    model = model.eval()
    wrapped = FlatOutputs(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.trace is deprecated in favour of torch.export, but TorchScript remains the
        # one self-contained format the C++ runtime and mobile load; silence the notice only
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(wrapped, images[:1], strict=False, check_trace=False)
        names = output_names(model, images[:1])
        extra = {METADATA_FILE: json.dumps({**(metadata or {}), "output_names": names,
                                            "input": "images: float (B, 3, S, S) in [0, 1]"})}
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files=extra)
        atomic_write_bytes(path, buf.getvalue())
        loaded = torch.jit.load(str(path), map_location="cpu")  # what a user of the file will run
        diffs: dict[str, float] = {}
        for batch in _check_batches(images):
            _compare(wrapped(batch), dict(loaded(batch)), diffs)
    ok = max(diffs.values(), default=0.0) <= tolerance
    return ExportResult(str(path), "torchscript", Path(path).stat().st_size, names, "torch.jit.trace",
                        "torch.jit.load", int(images.shape[0]), diffs, tolerance, ok)


def load_torchscript(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A TorchScript file written here as a model with the original nested outputs, and its metadata."""
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated; see export_torchscript
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    meta = json.loads(extra[METADATA_FILE] or "{}")
    return NestedOutputs(module).eval(), meta


# -- ONNX -------------------------------------------------------------------------------------
def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _dynamo_exporter_available() -> bool:
    return importlib.util.find_spec("onnxscript") is not None and importlib.util.find_spec("onnx") is not None


def export_onnx(model: nn.Module, path: str | os.PathLike, images: Tensor, tolerance: float = DEFAULT_TOLERANCE,
                opset: int = ONNX_OPSET, dynamo: bool | None = None,
                metadata: dict[str, Any] | None = None) -> ExportResult:
    """Export ``model`` to ONNX at ``path`` (input ``images``, dynamic batch; flat named outputs),
    then, when ONNX Runtime is installed, compare it with ``model`` on ``images``.

    ``dynamo`` picks the exporter: the ``torch.export``-based one (default when ``onnxscript``
    is installed) or the TorchScript-based one. The file appears at ``path`` only when complete.
    """
    model = model.eval()
    example = images[:2] if images.shape[0] >= 2 else images.expand(2, -1, -1, -1)  # torch.export specialises a batch of 1
    names = output_names(model, example)
    wrapped = FlatOutputs(model, names, as_tuple=True).eval()
    use_dynamo = _dynamo_exporter_available() if dynamo is None else dynamo
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter announces its retirement
            warnings.simplefilter("ignore", FutureWarning)
            kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": names, "opset_version": opset}
            if use_dynamo:
                batch = torch.export.Dim("batch", min=1, max=4096)
                kwargs.update(dynamo=True, external_data=False, dynamic_shapes=({0: batch},), verbose=False)
            else:
                kwargs.update(dynamo=False, dynamic_axes={"images": {0: "batch"}})
            try:
                torch.onnx.export(wrapped, (example,), tmp, **kwargs)
            except ImportError as e:
                raise MTLError(f"ONNX export needs the onnx package ({e}); pip install onnx onnxscript") from None
        if metadata:
            _add_onnx_metadata(tmp, {"mtl_studio": json.dumps(metadata)})
        diffs: dict[str, float] = {}
        checked_with = "not checked: onnxruntime is not installed (pip install onnxruntime)"
        ok: bool | None = None
        if onnxruntime_available():
            import onnxruntime as ort

            session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            with torch.no_grad():
                for batch in _check_batches(images):
                    got = session.run(names, {"images": batch.contiguous().numpy()})
                    _compare(flatten_outputs(model(batch)), {n: torch.from_numpy(g) for n, g in zip(names, got, strict=True)}, diffs)
            checked_with = f"onnxruntime {ort.__version__}"
            ok = max(diffs.values(), default=0.0) <= tolerance
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    exporter = f"torch.onnx.export ({'dynamo' if use_dynamo else 'TorchScript-based'}, opset {opset})"
    return ExportResult(str(path), "onnx", path.stat().st_size, names, exporter, checked_with,
                        int(images.shape[0]) if ok is not None else 0, diffs, tolerance, ok)


def _add_onnx_metadata(path: str, props: dict[str, str]) -> None:
    """Key/value metadata in the ONNX file (shown by Netron, read with ``onnx.load``)."""
    if importlib.util.find_spec("onnx") is None:
        return
    import onnx

    proto = onnx.load(path)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


# -- a run's checkpoint ------------------------------------------------------------------------
def sample_images(config, count: int) -> Tensor:
    """The first ``count`` validation images of a run's dataset: ``(count, 3, H, W)``."""
    dataset = build_dataset(config, "val", config.seed)
    images, _ = next(iterate_batches(dataset, count, limit=count))
    return images.float()


def export_checkpoint(checkpoint: str | os.PathLike, fmt: str, out: str | os.PathLike, samples: int = 4,
                      tolerance: float = DEFAULT_TOLERANCE, dynamo: bool | None = None) -> ExportResult:
    """Export a checkpoint (a run's, or a pruned one from :mod:`mtl_core.deploy.compress`) to ``fmt``
    (``onnx`` or ``torchscript``) at ``out``, checked on ``samples`` validation images."""
    if fmt not in FORMATS:
        raise MTLError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    if str(checkpoint).endswith(".ts"):
        raise MTLError(f"{Path(checkpoint).name} is already TorchScript (an int8 model from `compress`); "
                       "load it with torch.jit.load. int8 models are not exported to ONNX here")
    predictor = Predictor(checkpoint)
    images = sample_images(predictor.config, max(1, samples))
    metadata = {"config": predictor.config.to_dict(), "step": predictor.step,
                "image_size": predictor.config.to_dict()["data"]["image_size"], "resize": predictor.resize_policy,
                "class_names": list(predictor.info.class_names)}
    if fmt == "torchscript":
        return export_torchscript(predictor.model, out, images, tolerance, metadata)
    return export_onnx(predictor.model, out, images, tolerance, dynamo=dynamo, metadata=metadata)


def export_run(store, run_id: str, fmt: str, out: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
               **kwargs: Any) -> ExportResult:
    """:func:`export_checkpoint` of a run's chosen checkpoint (its best on validation unless its
    config says otherwise, see ``RunStore.chosen_checkpoint``), or of ``checkpoint``."""
    if checkpoint is None:
        ck = store.chosen_checkpoint(run_id)
        if ck is None:
            raise MTLError(f"run {run_id} has no checkpoint yet; export it once it has trained")
        checkpoint = ck["path"]
    return export_checkpoint(checkpoint, fmt, out, **kwargs)
