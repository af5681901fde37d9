"""Scores and honest statistics for comparing multi-task runs.

- Δm (Maninis, Radosavovic and Kokkinos, 'Attentive Single-Tasking of Multiple Tasks', CVPR 2019;
  Vandenhende et al., 'Multi-Task Learning for Dense Prediction Tasks: A Survey', TPAMI 2021): the mean
  over tasks of the signed relative change of each task's primary metric against a baseline, in percent;
  positive = better than the baseline.
- Confidence intervals over seeds (Student's t, paired by seed where levels share seeds, Welch's otherwise),
  a ranking that says which levels of a study cannot be told apart, the sentence that sums it up, and the
  Pareto front of trade-offs. The t quantiles come from ``scipy.stats.t``.

Every level of a study is trained with the same seeds, and so are the single-task baselines, so two levels
are compared seed by seed: the seed's data order and initialisation are shared noise that pairing cancels.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

# --------------------------------------------------------------------------------------------- Δm


def delta_m(metrics: Mapping[str, float], baseline: Mapping[str, float],
            higher_is_better: Mapping[str, bool]) -> float | None:
    """``mean_t (-1)^{l_t} (M_t - M_b,t) / M_b,t * 100`` with ``l_t = 1`` where lower is better, over
    the tasks both have (with a finite, non-zero baseline value); ``None`` when none is shared."""
    terms = []
    for task, m in metrics.items():
        b = baseline.get(task)
        if task not in higher_is_better or not _finite(m) or not _finite(b) or b == 0:
            continue
        sign = 1.0 if higher_is_better[task] else -1.0
        terms.append(sign * (float(m) - float(b)) / abs(float(b)) * 100.0)
    return sum(terms) / len(terms) if terms else None


def delta_m_per_seed(metrics: Mapping[int, Mapping[str, float]], baselines: Mapping[int, Mapping[str, float]],
                     higher_is_better: Mapping[str, bool]) -> dict[int, float]:
    """Δm of each seed's multi-task primary metrics (``metrics[seed][task]``) against the single-task
    baselines trained with the same seed (``baselines[seed][task]``), by seed in ascending order.

    Seeds without a baseline, or where no task is shared (``delta_m`` is None), are left out, so the result
    feeds ``mean_ci`` and ``paired_difference`` directly; pairing by seed removes the seed's own luck from Δm."""
    out: dict[int, float] = {}
    for seed in sorted(metrics):
        if seed not in baselines:
            continue
        d = delta_m(metrics[seed], baselines[seed], higher_is_better)
        if d is not None:
            out[seed] = d
    return out


# -------------------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval ``[low, high]``, from ``n`` values whose sample standard deviation
    (ddof=1) is ``std``. With one value the bounds are -inf and +inf (one seed says nothing about spread);
    with none, everything is NaN and ``n`` is 0."""
    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the closed interval (False for an undefined, n=0, interval)."""
        return bool(self.low <= x <= self.high)

    def __str__(self) -> str:
        return _format(self.mean, self.half_width, self.n)


def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> Interval:
    """Student's t confidence interval of the mean (Student, 'The probable error of a mean', Biometrika 1908):
    ``mean ± t_{(1+c)/2, n-1} · s / √n`` with the sample standard deviation ``s`` (ddof=1).

    None, NaN and ±inf values (a failed or diverged run) are dropped; ``n`` counts the values kept.
    n=1 gives ``low=-inf, high=+inf``; n=0 gives a NaN mean and bounds."""
    _check_confidence(confidence)
    kept = np.array([float(v) for v in values if _finite(v)], dtype=float)
    n = int(kept.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(kept.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1, math.nan)
    std = float(kept.std(ddof=1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, std)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95) -> Interval:
    """Paired t interval of the mean of ``a[s] - b[s]`` over the seeds ``s`` both have with a finite value
    (the paired comparison design: Student's interval on the per-seed differences; e.g. Montgomery, 'Design
    and Analysis of Experiments', ch. 2). ``n`` is the number of pairs and ``std`` the differences' std.

    Because a seed's luck moves both levels alike, this interval can exclude 0 while the two levels' own
    intervals overlap."""
    seeds = sorted(set(a) & set(b))
    return mean_ci([float(a[s]) - float(b[s]) for s in seeds if _finite(a[s]) and _finite(b[s])], confidence)


# ---------------------------------------------------------------------------------------- helpers


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} is outside (0, 1); use 0.95 for a 95% interval")


def _format(mean: float, half: float, n: int) -> str:
    """``mean ± half`` with the half-width to two significant digits and the mean to the same decimals."""
    if n == 0 or not math.isfinite(mean):
        return "no values"
    if not math.isfinite(half):
        return f"{mean:.3g} ± inf"
    if half <= 1e-9 * abs(mean) or half < 1e-12:  # identical per-seed values, up to float rounding
        return f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(half)))
    half_r = round(half, decimals)
    decimals = max(0, 1 - math.floor(math.log10(half_r)))  # 0.0996 rounds to 0.10, one decimal fewer
    m = f"{mean:.{decimals}f}"
    if float(m) == 0.0:
        m = m.lstrip("-")
    return f"{m} ± {half:.{decimals}f}"


def _finite(x: object) -> bool:
    try:
        return x is not None and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
