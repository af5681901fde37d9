"""Channel pruning of a run's model, fine-tuning, int8, and the before/after table.

:func:`prune_checkpoint` loads a checkpoint, removes ``amount`` of the channels outside the task
heads (:mod:`mtl_core.models.channel_prune`: Fang et al., "DepGraph: Towards Any Structural
Pruning", CVPR 2023), fine-tunes for ``finetune_steps`` (:mod:`mtl_core.deploy.finetune`),
quantizes the result to int8 (:func:`mtl_core.deploy.compress.quantize_int8`) and measures all
four models with :func:`compare_models`. Files, in ``<run dir>/compressed/``:
``channels-50.pt`` (a checkpoint :class:`~mtl_core.inference.predictor.Predictor` loads and
``export`` exports: weights plus the pruning history as JSON, no pickled modules),
``channels-50-int8.ts`` and ``channels-50.json`` (the table and the pruning spec).
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_core.data import build_dataset
from mtl_core.deploy.compress import (
    DEFAULT_BACKEND,
    _metrics,
    _quiet_quantization,
    cpu_latency_ms,
    quantize_int8,
    state_dict_bytes,
)
from mtl_core.deploy.export import export_torchscript
from mtl_core.deploy.finetune import finetune
from mtl_core.errors import MTLError
from mtl_core.inference.predictor import Predictor
from mtl_core.models.channel_prune import multiply_adds, parameter_count, prune_channels
from mtl_core.training.checkpoint import atomic_write_bytes, save_checkpoint
from mtl_core.training.evaluation import iterate_batches
from mtl_core.training.loop import masked_loss

KIND = "channels"  # the report's "requested": keeps these tables apart from compress's reports
COLUMNS = ("model", "parameters", "multiply-adds", "size (bytes)", "latency b1 (ms)", "latency b32 (ms)")


def compare_models(models: dict[str, nn.Module], tasks: dict, val, image_size: int | tuple[int, int],
                   eval_limit: int | None = None,
                   latency_runs: int = 10, counts_of: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per model: parameters, multiply-adds at batch 1 (torch's ``FlopCounterMode``),
    size of its state dict as ``torch.save`` writes it, median CPU latency at batch 1 and 32 (ms),
    and every task's primary metric on the first ``eval_limit`` validation images.

    ``counts_of`` names, for a model whose layers are not plain float modules (int8), the model
    whose parameter and multiply-add counts it shares (int8 keeps every weight, as 8-bit integers,
    and FlopCounterMode does not see quantized kernels).
    """
    counts_of = counts_of or {}
    rows, counts = [], {}
    for name, model in models.items():
        model.eval()
        source = counts_of.get(name)
        if source is None:
            counts[name] = (parameter_count(model), multiply_adds(model, image_size))
        params, macs = counts.get(source or name, (math.nan, math.nan))
        with _quiet_quantization():
            row = {"model": name, "parameters": params, "multiply-adds": macs,
                   "size (bytes)": len(state_dict_bytes(model)),
                   "latency b1 (ms)": cpu_latency_ms(model, image_size, latency_runs, batch=1),
                   "latency b32 (ms)": cpu_latency_ms(model, image_size, max(1, latency_runs // 2), batch=32)}
        scores = _metrics(model, tasks, val, eval_limit)
        for t, task in tasks.items():
            row[f"{t}/{task.primary}"] = scores.get(f"{t}/{task.primary}", math.nan)
        rows.append(row)
    return rows


def stem(amount: float) -> str:
    """``channels-50`` (percent removed): the file names in ``compressed/``."""
    return f"{KIND}-{round(100 * float(amount))}"


def prune_checkpoint(checkpoint: str | os.PathLike, amount: float = 0.5, finetune_steps: int = 0,
                     out_dir: str | os.PathLike | None = None, importance: str = "magnitude",
                     lr: float | None = None, int8: bool = True, eval_limit: int | None = None,
                     latency_runs: int = 10, calibration_batches: int = 4,
                     backend: str = DEFAULT_BACKEND) -> dict[str, Any]:
    """Prune, fine-tune, quantize and compare (see the module docstring); returns the saved report:
    ``{"requested": "channels", "spec": {...}, "rows": compare_models(...), "files": {...}, ...}``."""
    predictor = Predictor(checkpoint)
    model, tasks, config = predictor.model, predictor.tasks, predictor.config
    size = predictor.input_size  # (H, W)
    stored_size = config.to_dict()["data"]["image_size"]  # as the config writes it: 64, or [height, width]
    out_dir = Path(out_dir) if out_dir is not None else Path(checkpoint).parent / "compressed"
    name = stem(amount)
    train = build_dataset(config, "train", config.seed)
    val = build_dataset(config, "val", config.seed)
    images, targets = next(iterate_batches(train, min(32, len(train)), limit=min(32, len(train))))

    def loss_fn(m: nn.Module) -> torch.Tensor:  # for Taylor importance: the run's tasks' losses on a training batch
        outputs = m(images)
        return sum(masked_loss(task, outputs[t], *task.target_of(targets)) for t, task in tasks.items())

    pruned = prune_channels(copy.deepcopy(model), amount, images, importance, loss_fn=loss_fn)
    models: dict[str, nn.Module] = {"original": model, "channel-pruned": pruned}
    final, losses = pruned, []
    if finetune_steps > 0:
        final = copy.deepcopy(pruned)
        final.pruning_history = pruned.pruning_history
        losses = finetune(final, config, tasks, train, finetune_steps, lr)
        models["fine-tuned"] = final
    spec = {"amount": float(amount), "importance": importance, "finetune_steps": int(finetune_steps),
            "lr": lr, "seed": config.seed, "image_size": stored_size, "source": str(checkpoint),
            "history": final.pruning_history}
    path = out_dir / f"{name}.pt"
    save_checkpoint(path, config, predictor.step, final.state_dict(), {
        "info": {k: list(v) if isinstance(v, tuple) else v for k, v in predictor.info_dict().items()},
        "structure": json.dumps(spec)})
    files = {"model": str(path)}
    counts_of = {}
    note = ""
    if int8:
        calibration = (b for b, _ in iterate_batches(train, 16, limit=calibration_batches * 16))
        quantized, method, note = quantize_int8(final, calibration, images[:1], backend=backend)
        ts = out_dir / f"{name}-int8.ts"
        with _quiet_quantization():
            exported = export_torchscript(quantized, ts, images[:4], metadata={
                "config": config.to_dict(), "step": predictor.step, "compression": f"{method} after {name}",
                "image_size": stored_size, "class_names": list(predictor.info.class_names)})
        if not exported.ok:
            raise MTLError(f"the saved int8 TorchScript differs from the quantized model by {exported.worst_diff:.3g}")
        files["int8"] = str(ts)
        models["int8"] = quantized
        counts_of["int8"] = "fine-tuned" if finetune_steps > 0 else "channel-pruned"
    rows = compare_models(models, tasks, val, size, eval_limit, latency_runs, counts_of)
    report = {"requested": KIND, "checkpoint": str(checkpoint), "step": predictor.step, "spec": spec,
              "rows": rows, "finetune_losses": losses, "int8_note": note,
              "primary": {t: f"{t}/{task.primary}" for t, task in tasks.items()},
              "higher_is_better": {t: task.higher_is_better for t, task in tasks.items()},
              "eval_images": min(len(val), eval_limit or len(val)), "files": files}
    report_path = out_dir / f"{name}.json"
    report["files"]["report"] = str(report_path)
    atomic_write_bytes(report_path, json.dumps(_jsonable(report), indent=2).encode())
    return report


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def prune_run(store, run_id: str, amount: float = 0.5, finetune_steps: int = 0, **kwargs: Any) -> dict[str, Any]:
    """:func:`prune_checkpoint` of a run's chosen checkpoint (``RunStore.chosen_checkpoint``)
    into ``<run dir>/compressed/``."""
    ck = store.chosen_checkpoint(run_id)
    if ck is None:
        raise MTLError(f"run {run_id} has no checkpoint yet; prune it once it has trained")
    return prune_checkpoint(ck["path"], amount, finetune_steps, out_dir=store.run_dir(run_id) / "compressed", **kwargs)


def structured_reports(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The channel-pruning reports of a run (newest first)."""
    out = []
    folder = Path(run_dir) / "compressed"
    for p in sorted(folder.glob(f"{KIND}-*.json"), key=lambda f: f.stat().st_mtime, reverse=True):
        try:
            saved = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if saved.get("requested") == KIND:
            out.append(saved)
    return out


def pruned_models(run_dir: str | os.PathLike) -> dict[str, str]:
    """The run's channel-pruned models that are still on disk, newest first: ``{label: checkpoint path}``,
    e.g. ``{"channel-pruned 50%, fine-tuned 600 steps": ".../compressed/channels-50.pt"}``. Paths are
    taken beside the report, so a runs folder that moved still finds them."""
    out = {}
    for saved in structured_reports(run_dir):
        spec = saved.get("spec") or {}
        name = Path(str((saved.get("files") or {}).get("model", ""))).name
        path = Path(run_dir) / "compressed" / name
        if not name or not path.is_file():
            continue
        steps = int(spec.get("finetune_steps", 0))
        label = f"channel-pruned {float(spec.get('amount', 0)):.0%}" + (f", fine-tuned {steps} steps" if steps else "")
        out.setdefault(label, str(path))
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as plain text (the CLI prints it): one line per model, numbers right-aligned."""
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else "nan"
        return "-" if v is None else str(v)

    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cols))]
    for r in cells:
        lines.append("  ".join(v.ljust(widths[0]) if i == 0 else v.rjust(widths[i]) for i, v in enumerate(r)))
    return "\n".join(lines)
