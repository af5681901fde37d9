"""The channel-pruning table of the Compress & export page: pure pandas, no Streamlit, no torch.

One row per model (original, channel-pruned, fine-tuned, int8) as
:func:`mtl_core.deploy.structured.compare_models` measures them, in each column's unit, with
the change against the original beside the counts and every task's primary metric.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ui.metrics import format_bytes


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _rel(v: float, base: float) -> str:
    if not (math.isfinite(v) and math.isfinite(base)) or base == 0:
        return ""
    return f" ({v / base - 1:+.0%})"


def pruning_table(rows: Iterable[Mapping[str, Any]], higher_is_better: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Saved ``compare_models`` rows -> a display table: counts with their change against the
    first row (the original), sizes in kB/MB, latency in ms, primary metrics with an arrow
    (↑ higher is better) and their change in points."""
    rows = list(rows)
    if not rows:
        return pd.DataFrame()
    base = rows[0]
    better = higher_is_better or {}
    out = []
    for r in rows:
        line: dict[str, str] = {"model": str(r.get("model", "?"))}
        for col, fmt in (("parameters", "{:,.0f}"), ("multiply-adds", "{:,.0f}")):
            v = _num(r.get(col))
            line[col] = (fmt.format(v) if math.isfinite(v) else "—") + _rel(v, _num(base.get(col)))
        size = _num(r.get("size (bytes)"))
        line["size on disk"] = format_bytes(size) + _rel(size, _num(base.get("size (bytes)")))
        for col in ("latency b1 (ms)", "latency b32 (ms)"):
            v = _num(r.get(col))
            line[col.replace(" (ms)", "")] = (f"{v:.2f} ms" if math.isfinite(v) else "—") + _rel(v, _num(base.get(col)))
        for key, value in r.items():
            if "/" not in key:
                continue
            task = key.split("/")[0]
            v, b = _num(value), _num(base.get(key))
            arrow = "↑" if better.get(task, True) else "↓"
            change = f" ({(v - b):+.3f})" if r is not base and math.isfinite(v) and math.isfinite(b) else ""
            line[f"{key} {arrow}"] = (f"{v:.3f}" if math.isfinite(v) else "—") + change
        out.append(line)
    return pd.DataFrame(out)
