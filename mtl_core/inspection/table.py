"""The error table of a split (one row per sample, columns per task), its filters, the
per-task summaries, how tasks fail together, and its CSV.

A column is ``"<task>/<name>"`` (see each task display's ``error_columns``); ``tasks_failed`` counts the
tasks whose ``failed`` flag is set on the sample. Plain Python only, so a page can hand it to pandas.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mtl_core.measures.types import COUNT, FLAG, FRACTION, TEXT, VALUE, ErrorColumn

OPERATORS = (">=", "<=", "==")


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def columns(tasks: Mapping[str, Any]) -> dict[str, tuple[str, ErrorColumn]]:
    """``{"<task>/<name>": (task, column)}`` in task order."""
    return {f"{t}/{c.name}": (t, c) for t, task in tasks.items() for c in task.display.error_columns}


def error_table(outputs: Any, score_threshold: float = 0.3) -> dict[str, list]:
    """``{"sample": dataset indices, "tasks_failed": counts, "<task>/<name>": values}``."""
    errors = outputs.errors(score_threshold)
    n = len(outputs)
    failed = [0] * n
    for t in outputs.tasks:
        for i, v in enumerate(errors.get(f"{t}/failed", [])):
            if not _is_nan(v) and v:
                failed[i] += 1
    return {"sample": list(outputs.indices), "tasks_failed": failed, **errors}


@dataclass(frozen=True)
class Condition:
    """``column op value``, e.g. ``Condition("detection/misses", ">=", 1)``; a sample without a
    value (unlabelled for that task) never passes."""

    column: str
    op: str
    value: float | str

    def test(self, v: Any) -> bool:
        if v is None or _is_nan(v) or v == "":
            return False
        if self.op == "==":
            return v == self.value
        return v >= self.value if self.op == ">=" else v <= self.value

    def words(self, titles: Mapping[str, str] | None = None) -> str:
        name = (titles or {}).get(self.column, self.column)
        return f"{name} {'≥' if self.op == '>=' else '≤' if self.op == '<=' else '='} {self.value}"


def filter_rows(table: Mapping[str, Sequence], conditions: Sequence[Condition]) -> list[int]:
    """Row positions passing every condition (all of them: "misses ≥ 1 and IoU ≤ 0.5")."""
    for c in conditions:
        if c.column not in table:
            raise KeyError(f"no column {c.column!r}; the table has {', '.join(table)}")
        if c.op not in OPERATORS:
            raise ValueError(f"operator {c.op!r}: use one of {', '.join(OPERATORS)}")
    n = len(next(iter(table.values()), []))
    return [i for i in range(n) if all(c.test(table[c.column][i]) for c in conditions)]


def sort_rows(table: Mapping[str, Sequence], rows: Sequence[int], column: str, worst_first: bool = True,
              worse: str = "high") -> list[int]:
    """``rows`` ordered by ``column``, the worse end first (``worse``: "high" or "low"); samples
    without a value go last; ties keep the dataset order."""
    values = table[column]

    def key(i: int):
        v = values[i]
        if v is None or _is_nan(v) or v == "":
            return (1, 0.0, i)
        if isinstance(v, str):
            return (0, 0.0, i)
        sign = -1.0 if (worse == "high") == worst_first else 1.0
        return (0, sign * float(v), i)

    return sorted(rows, key=key)


def summary(tasks: Mapping[str, Any], table: Mapping[str, Sequence]) -> dict[str, list[str]]:
    """Per task, a line per column: a flag's count and share, a count's total and mean, a
    fraction's or value's mean and median, over the samples labelled for the task."""
    out: dict[str, list[str]] = {}
    for key, (t, col) in columns(tasks).items():
        if key not in table or col.kind == TEXT:
            continue
        values = [float(v) for v in table[key] if not (v is None or _is_nan(v))]
        if not values:
            out.setdefault(t, []).append(f"{col.title}: no labelled sample")
            continue
        n = len(values)
        if col.kind == FLAG:
            k = int(sum(values))
            line = f"{col.title}: {k} of {n} ({k / n:.1%})"
        elif col.kind == COUNT:
            line = f"{col.title}: {sum(values):.0f} in all, {sum(values) / n:.2f} per sample"
        else:
            ordered = sorted(values)
            median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
            line = f"{col.title}: mean {sum(values) / n:.4f}, median {median:.4f}"
        out.setdefault(t, []).append(line)
    return out


def co_failure(tasks: Sequence[str], table: Mapping[str, Sequence]) -> dict[str, Any]:
    """How tasks fail together: ``share[a][b]`` = of the samples where task ``a`` failed (and
    ``b`` is labelled), the share where ``b`` failed too (the diagonal: ``a``'s failure rate
    over its labelled samples); ``count[a][b]`` the samples where both failed."""
    flags = {t: table.get(f"{t}/failed", []) for t in tasks}
    share, count = [], []
    for a in tasks:
        row_s, row_c = [], []
        for b in tasks:
            fa, fb = flags[a], flags[b]
            both = [i for i in range(len(fa)) if not _is_nan(fa[i]) and not _is_nan(fb[i])]
            if a == b:
                failed = sum(1 for i in both if fa[i])
                row_s.append(failed / len(both) if both else float("nan"))
                row_c.append(failed)
                continue
            given = [i for i in both if fa[i]]
            k = sum(1 for i in given if fb[i])
            row_s.append(k / len(given) if given else float("nan"))
            row_c.append(k)
        share.append(row_s)
        count.append(row_c)
    return {"tasks": list(tasks), "share": share, "count": count}


def to_csv(table: Mapping[str, Sequence]) -> str:
    """One row per sample, a header of the column names; blank where a sample has no value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = list(table)
    writer.writerow(names)
    n = len(table[names[0]]) if names else 0
    for i in range(n):
        writer.writerow(["" if (v := table[k][i]) is None or _is_nan(v) else
                         (f"{v:.6g}" if isinstance(v, float) else v) for k in names])
    return buf.getvalue()


__all__ = ["COUNT", "FLAG", "FRACTION", "OPERATORS", "TEXT", "VALUE", "Condition", "co_failure", "columns",
           "error_table", "filter_rows", "sort_rows", "summary", "to_csv"]
