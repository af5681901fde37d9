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

from ui.metrics import float_or_nan, format_bytes


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
            v = float_or_nan(r.get(col))
            line[col] = (fmt.format(v) if math.isfinite(v) else "—") + _rel(v, float_or_nan(base.get(col)))
        size = float_or_nan(r.get("size (bytes)"))
        line["size on disk"] = format_bytes(size) + _rel(size, float_or_nan(base.get("size (bytes)")))
        for col in ("latency b1 (ms)", "latency b32 (ms)"):
            v = float_or_nan(r.get(col))
            line[col.replace(" (ms)", "")] = (f"{v:.2f} ms" if math.isfinite(v) else "—") + _rel(v, float_or_nan(base.get(col)))
        for key, value in r.items():
            if "/" not in key:
                continue
            task = key.split("/")[0]
            v, b = float_or_nan(value), float_or_nan(base.get(key))
            arrow = "↑" if better.get(task, True) else "↓"
            change = f" ({(v - b):+.3f})" if r is not base and math.isfinite(v) and math.isfinite(b) else ""
            line[f"{key} {arrow}"] = (f"{v:.3f}" if math.isfinite(v) else "—") + change
        out.append(line)
    return pd.DataFrame(out)
