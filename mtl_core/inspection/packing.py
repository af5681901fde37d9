"""Per-sample predictions (or truths) of one task, stacked into a few tensors and back.

A task's predictions are dicts of tensors, lists and numbers (see each task's ``decode``);
:func:`pack` stacks each key over the samples (a ragged one, such as an image's boxes, padded with
its lengths kept), so a whole split saves as plain tensors that ``torch.load(weights_only=True)``
reads back, and :func:`unpack` gives sample ``i``'s dict again. Nothing here knows a task: the
layout follows the values. Label maps are stored as uint8 and dense float maps as float16 (a
split of depth maps is half the size; the errors are computed before packing, at full precision).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

DENSE_MIN_SIDE = 8  # a float tensor whose last two sides are both this or more is a map (float16)


def _compact(x: Tensor) -> Tensor:
    if x.dtype in (torch.int64, torch.int32) and x.numel() and 0 <= int(x.min()) and int(x.max()) <= 255:
        return x.to(torch.uint8)
    if x.is_floating_point() and x.dim() >= 3 and min(x.shape[-2:]) >= DENSE_MIN_SIDE:  # (N, ..., H, W)
        return x.to(torch.float16)
    return x


def _pack_values(values: list[Any]) -> dict[str, Any]:
    sample = next(v for v in values if v is not None)
    if isinstance(sample, Tensor):
        filler = torch.zeros_like(sample)
        items = [filler if v is None else v.detach().cpu() for v in values]
        dtype = str(sample.dtype).removeprefix("torch.")
        if all(v.shape == sample.shape for v in items):
            return {"kind": "tensor", "dtype": dtype, "data": _compact(torch.stack(items))}
        lengths = torch.tensor([len(v) for v in items], dtype=torch.long)
        width = int(lengths.max()) if len(items) else 0
        data = torch.zeros(len(items), width, *sample.shape[1:], dtype=sample.dtype)
        for i, v in enumerate(items):
            data[i, :len(v)] = v
        return {"kind": "ragged", "dtype": dtype, "data": _compact(data), "lengths": lengths}
    if isinstance(sample, (list, tuple)):
        items = [[] if v is None else list(v) for v in values]
        is_int = all(isinstance(x, int) for v in items for x in v)
        lengths = torch.tensor([len(v) for v in items], dtype=torch.long)
        width = int(lengths.max()) if items else 0
        data = torch.zeros(len(items), width, dtype=torch.long if is_int else torch.float32)
        for i, v in enumerate(items):
            data[i, :len(v)] = torch.tensor(v, dtype=data.dtype)
        return {"kind": "list", "dtype": "int" if is_int else "float", "data": data, "lengths": lengths}
    is_int = isinstance(sample, (bool, int))
    data = torch.tensor([0 if v is None else v for v in values], dtype=torch.long if is_int else torch.float64)
    return {"kind": "number", "dtype": "int" if is_int else "float", "data": data}


def pack(items: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack per-sample dicts (``None`` for a sample without one) into ``{key: packed}`` plus
    ``"present"``: bool ``(N,)``."""
    present = torch.tensor([it is not None for it in items], dtype=torch.bool)
    given = [it for it in items if it is not None]
    keys = [k for k in given[0] if all(k in it for it in given)] if given else []  # the keys every sample has
    return {"present": present, "keys": {k: _pack_values([None if it is None else it[k] for it in items]) for k in keys}}


def _unpack_value(packed: dict[str, Any], i: int) -> Any:
    kind, data = packed["kind"], packed["data"]
    if kind == "tensor":
        value = data[i]
    elif kind == "ragged":
        value = data[i, :int(packed["lengths"][i])]
    elif kind == "list":
        row = data[i, :int(packed["lengths"][i])]
        return [int(x) for x in row.tolist()] if packed["dtype"] == "int" else [float(x) for x in row.tolist()]
    else:
        return int(data[i]) if packed["dtype"] == "int" else float(data[i])
    dtype = getattr(torch, packed["dtype"])
    return value.to(dtype) if value.dtype != dtype else value


def unpack(packed: dict[str, Any], i: int) -> dict[str, Any] | None:
    """Sample ``i``'s dict as it was packed (``None`` where it had none)."""
    if not bool(packed["present"][i]):
        return None
    return {k: _unpack_value(v, i) for k, v in packed["keys"].items()}


def unpack_all(packed: dict[str, Any]) -> list[dict[str, Any] | None]:
    return [unpack(packed, i) for i in range(len(packed["present"]))]
