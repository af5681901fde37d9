"""Tables and series for the dashboard's charts: pure pandas/numpy, no Streamlit, no torch.

- :func:`ema`: TensorBoard's debiased exponential moving average;
- :func:`downsample`: at most ``max_points`` per series for plotting, keeping every bucket's
  extremes (so spikes stay visible) and the first and last points;
- :func:`delta_m`: the multi-task score of Maninis et al. (2019), "Attentive Single-Tasking of
  Multiple Tasks", CVPR (as popularised by Vandenhende et al., 2021, TPAMI);
- :func:`single_task_baselines` / :func:`delta_m_vs_single_task`: Δm of a multi-task run against
  its own single-task baselines, each task against the run that learnt it alone;
- :func:`report_table`: a compression report's before/after rows in each row's unit;
- :func:`pareto_front`: which points no other point beats on both axes;
- :class:`MetricCache`: a run's metric rows read incrementally from the run store.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mtl_core.protocols.selection import BEST_SPLIT, Reported, reported_metrics
from mtl_core.scores import delta_m, is_finite, pareto_mask  # noqa: F401  (delta_m: one definition, shared with the benchmarks)
from mtl_core.store.status import ACTIVE, RunStatus

Row = tuple[int, str, str, float, float]  # (step, split, key, value, wall), as RunStore.metrics returns
COLUMNS = ["step", "split", "key", "value", "wall"]


def rows_to_frame(rows: Iterable[Row]) -> pd.DataFrame:
    """Run-store metric rows -> a DataFrame with columns step, split, key, value, wall."""
    df = pd.DataFrame(list(rows), columns=COLUMNS)
    df["value"] = pd.to_numeric(df["value"], errors="coerce")  # None (a NaN/inf the store refused) -> NaN
    return df


def ema(values: Sequence[float] | np.ndarray, smoothing: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard smooths its scalars.

    ``s_t = sum_i w^i x_{t-i} / sum_i w^i`` with ``w = smoothing``: the zero start of a plain EMA
    is divided out, so the first smoothed point equals the first raw point and a constant series
    stays constant. Non-finite points are passed through and do not update the average.
    """
    x = np.asarray(values, dtype=float)
    w = min(max(float(smoothing), 0.0), 0.999)
    if w == 0.0 or x.size == 0:
        return x.copy()
    out = x.copy()
    ok = np.isfinite(x)
    if ok.any():
        # pandas' adjusted EWM is exactly this normalised sum, computed in C
        out[ok] = pd.Series(x[ok]).ewm(alpha=1.0 - w, adjust=True).mean().to_numpy()
    return out


def downsample_indices(values: Sequence[float] | np.ndarray, max_points: int = 1000) -> np.ndarray:
    """Indices (sorted) of at most ``max_points`` points to plot: the first, the last, and the
    minimum and maximum of each of ``(max_points - 2) // 2`` equal buckets in between."""
    y = np.asarray(values, dtype=float)
    n = y.size
    max_points = max(2, int(max_points))
    if n <= max_points:
        return np.arange(n)
    k = (max_points - 2) // 2
    if k == 0:
        return np.array([0, n - 1])
    inner = np.arange(1, n - 1)
    bucket = (np.arange(n - 2) * k) // (n - 2)  # (n-2,) bucket of each inner point, in order
    key = np.where(np.isfinite(y[inner]), y[inner], np.inf)  # a NaN never hides a real extreme
    order = np.lexsort((key, bucket))  # by bucket, then by value
    b_sorted = bucket[order]
    first = np.r_[True, b_sorted[1:] != b_sorted[:-1]]
    last = np.r_[b_sorted[1:] != b_sorted[:-1], True]
    picks = inner[np.r_[order[first], order[last]]]
    return np.unique(np.r_[0, picks, n - 1])


def downsample(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
               max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` thinned to at most ``max_points`` points (see :func:`downsample_indices`)."""
    xa, ya = np.asarray(x), np.asarray(y, dtype=float)
    idx = downsample_indices(ya, max_points)
    return xa[idx], ya[idx]




def single_task_baselines(runs: Iterable[Mapping[str, Any]], run_id: str) -> dict[str, Mapping[str, Any]]:
    """The single-task baselines started for ``run_id`` (runs whose config has ``baseline_of =
    run_id`` and one task), one per task: the newest finished one, else the newest still
    training, else the newest that ended another way (failed, stopped)."""
    def rank(r: Mapping[str, Any]) -> tuple:
        return r.get("status") == RunStatus.FINISHED, r.get("status") in ACTIVE, r.get("created") or 0

    out: dict[str, Mapping[str, Any]] = {}
    for r in runs:
        cfg = r.get("config") or {}
        tasks = list(cfg.get("tasks") or [])
        if not run_id or cfg.get("baseline_of") != run_id or len(tasks) != 1:
            continue
        if tasks[0] not in out or rank(r) > rank(out[tasks[0]]):
            out[tasks[0]] = r
    return out


def delta_m_vs_single_task(tasks: Sequence[str], metrics: Mapping[str, float], baselines: Mapping[str, float],
                           higher_is_better: Mapping[str, bool]) -> float | None:
    """Δm (see :func:`delta_m`) of a multi-task run against single-task baselines: ``metrics`` and
    ``baselines`` map each task to its primary metric (the run's, and that of the baseline trained
    on the task alone). ``None`` unless every one of ``tasks`` has both values: a mean over some
    of the tasks would flatter or punish the run."""
    if not tasks or any(not is_finite(metrics.get(t)) or not is_finite(baselines.get(t)) or baselines.get(t) == 0
                        or t not in higher_is_better for t in tasks):
        return None
    return delta_m({t: metrics[t] for t in tasks}, {t: baselines[t] for t in tasks}, higher_is_better)


def format_bytes(n: float | None) -> str:
    """``1145499`` -> ``'1.15 MB'`` (decimal units, as file managers show them)."""
    if not is_finite(n):
        return "–"
    v = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(v) < 1000 or unit == "GB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.2f} {unit}"
        v /= 1000
    return f"{v:.2f} GB"  # pragma: no cover - the loop returns


def report_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A compression report's rows (``measure, before, after, change, relative``, as
    ``mtl_core.deploy.compress.CompressionReport.rows`` gives them) for reading: before and after in
    each row's unit (sizes in kB/MB, latency in ms, metrics to four places, the zero-weight
    fraction in percent) and the change as a person compares it: relative for sizes and time,
    absolute for metrics, in points for the fraction."""
    out = []
    for r in rows:
        measure = str(r["measure"])
        before, after, change, rel = (r.get(k) for k in ("before", "after", "change", "relative"))
        if measure.startswith("size"):
            fmt, delta = format_bytes, (f"{float(rel):+.0%}" if is_finite(rel) else "–")
            measure = measure.replace("bytes, ", "").replace(" (bytes)", "")
        elif "latency" in measure:
            fmt, delta = (lambda v: f"{float(v):.2f} ms" if is_finite(v) else "–"), (f"{float(rel):+.0%}" if is_finite(rel) else "–")
        elif measure.startswith("zero weights"):
            fmt, delta = (lambda v: f"{float(v):.1%}" if is_finite(v) else "–"), (f"{100 * float(change):+.1f} pts" if is_finite(change) else "–")
        else:  # a task's primary metric, e.g. "classification/accuracy ↑"
            fmt, delta = (lambda v: f"{float(v):.4f}" if is_finite(v) else "–"), (f"{float(change):+.4f}" if is_finite(change) else "–")
        out.append({"measure": measure, "before": fmt(before), "after": fmt(after), "change": delta})
    return pd.DataFrame(out, columns=["measure", "before", "after", "change"])


def pareto_front(x: Sequence[float], y: Sequence[float], maximize_x: bool = True,
                 maximize_y: bool = True) -> np.ndarray:
    """Boolean mask of the points no other point dominates, each axis in its own direction
    (:func:`mtl_core.scores.pareto_mask` on two axes). NaN points are never on the front."""
    return np.asarray(pareto_mask(list(zip(x, y, strict=True)), (maximize_x, maximize_y)), dtype=bool)


def front_line(x: Sequence[float], y: Sequence[float], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The front's points (``mask`` from :func:`pareto_front`) sorted by x, for drawing as a line."""
    xs, ys = np.asarray(x, dtype=float)[mask], np.asarray(y, dtype=float)[mask]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def final_report(rows: Iterable[Row], config: Any = None, use: str = "") -> Reported:
    """What a run reports from its metric rows (every split): by ``use`` (best, last, mean_last)
    or its config's ``select.use``, with the words that say which model (see
    :func:`mtl_core.protocols.selection.reported_metrics`)."""
    return reported_metrics(rows, config, use)


def final_metrics(rows: Iterable[Row], config: Any = None, use: str = "") -> tuple[dict[str, float], str | None]:
    """A run's final evaluation as ``({"<task>/<metric>" or "loss/<task>": value}, split or None)``:
    the test split's (its best-on-validation model's unless ``use`` or its config says otherwise)
    when present, else the last ``val`` step's."""
    r = reported_metrics(rows, config, use)
    return r.values, ("test" if r.split in ("test", BEST_SPLIT) else r.split)


def primary_values(final: Mapping[str, float], primary: Mapping[str, str]) -> dict[str, float]:
    """``{task: value of its primary metric}`` from :func:`final_metrics` output."""
    return {t: final[f"{t}/{m}"] for t, m in primary.items() if f"{t}/{m}" in final}


def format_duration(seconds: float | None) -> str:
    """``3725`` -> ``'1h 02m'``, ``75`` -> ``'1m 15s'``, ``None`` -> ``'–'``."""
    if seconds is None or not is_finite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def run_duration(run: Mapping[str, Any]) -> float | None:
    """Seconds from start to finish (or to the last update while it runs)."""
    start = run.get("started")
    end = run.get("finished") or run.get("updated")
    return float(end) - float(start) if start and end else None


@dataclass
class MetricCache:
    """One run's metric series, read from the run store a few new rows at a time.

    Each :meth:`update` asks the store for the rows written after the last one it saw (an index
    range, the same cost at 200,000 rows as at 2,000; no count, no step re-read) and starts over
    when the run's metrics history changed (rows were removed: a run resumed from an earlier
    checkpoint forgets the steps past it and writes them again)."""

    run_id: str
    last_step: int = -1
    count: int = 0
    generation: int = 0  # the store's metrics_history of the rows held
    last_id: int = 0  # the last row read (RunStore.metrics_after)
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)  # derived results (figures) keyed by what they used
    # get()'s arrays per series, grown by the new points only: converting a 25,000-point list to an
    # array on every refresh was a third of the live charts' cost at 200,000 rows
    _arrays: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False,
                                                                          compare=False)

    def update(self, store: Any) -> int:
        """Read new rows from ``store`` (a RunStore); returns how many rows were added."""
        for _ in range(3):
            history = store.metrics_history(self.run_id)
            if history != self.generation:  # rows were removed: start over
                self._reset(history)
            rows, last_id = store.metrics_after(self.run_id, self.last_id)
            # history only grows: unchanged after the read means no removal happened during it
            if store.metrics_history(self.run_id) == history:
                self.last_id = last_id
                return self._add(rows)
        self._reset(history)  # removed again and again while reading: come back at the next poll
        return 0

    def _reset(self, generation: int) -> None:
        self.series.clear()
        self.memo.clear()
        self._arrays.clear()
        self.count = 0
        self.last_step = -1
        self.last_id = 0
        self.generation = generation

    def _add(self, rows: list[Row]) -> int:
        """Append rows in the order written, each to its series in step order. A trainer writes
        each series in step order (a step's validation rows land after its training rows, but in
        their own series), so a row lands behind a later step only if two processes wrote the
        same run; it is then put in its place rather than drawn as a line going back."""
        for step, split, key, value, _ in rows:
            steps, values = self.series.setdefault((split, key), ([], []))
            step = int(step)
            if steps and step < steps[-1]:
                at = bisect.bisect_right(steps, step)
                steps.insert(at, step)
                values.insert(at, float_or_nan(value))
                self._arrays.pop((split, key), None)  # not a tail any more: convert it afresh
            else:
                steps.append(step)
                values.append(float_or_nan(value))
            if step > self.last_step:
                self.last_step = step
        self.count += len(rows)
        return len(rows)

    def get(self, split: str, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` arrays of one series (empty when absent), read-only: they are
        shared by every caller until the series grows."""
        steps, values = self.series.get((split, key), ([], []))
        old_steps, old_values = self._arrays.get((split, key), (_NO_STEPS, _NO_VALUES))
        n = len(old_steps)
        if n == len(steps):
            return old_steps, old_values
        new = (np.concatenate([old_steps, np.asarray(steps[n:], dtype=np.int64)]),
               np.concatenate([old_values, np.asarray(values[n:], dtype=float)]))
        for array in new:
            array.flags.writeable = False
        self._arrays[(split, key)] = new
        return new

    def keys(self, split: str) -> list[str]:
        return sorted(k for s, k in self.series if s == split)


_NO_STEPS, _NO_VALUES = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=float)
_NO_STEPS.flags.writeable = _NO_VALUES.flags.writeable = False



def float_or_nan(v: Any) -> float:
    """``v`` as a float, NaN where there is none (a table's blank)."""
    return float(v) if v is not None else float("nan")
