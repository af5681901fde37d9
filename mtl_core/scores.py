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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

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
        if task not in higher_is_better or not is_finite(m) or not is_finite(b) or b == 0:
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
    kept = np.array([float(v) for v in values if is_finite(v)], dtype=float)
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
    return mean_ci([float(a[s]) - float(b[s]) for s in seeds if is_finite(a[s]) and is_finite(b[s])], confidence)


def _welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """Welch's interval of ``mean(a) - mean(b)`` for unpaired samples with unequal variances (Welch, 'The
    generalization of Student's problem when several different population variances are involved',
    Biometrika 1947; degrees of freedom after Satterthwaite 1946). Infinite when either side has fewer than
    two values. ``n`` is the smaller sample; ``std`` is NaN (there is no single sample behind it)."""
    x = np.array([float(v) for v in a if is_finite(v)], dtype=float)
    y = np.array([float(v) for v in b if is_finite(v)], dtype=float)
    n = int(min(x.size, y.size))
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    diff = float(x.mean() - y.mean())
    if n < 2:
        return Interval(diff, -math.inf, math.inf, n, math.nan)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(diff, diff, diff, n, math.nan)
    df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, df)) * se
    return Interval(diff, diff - half, diff + half, n, math.nan)


# ---------------------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Ranked:
    """One level of a study in ``rank_levels``'s order.

    ``rank`` is 1 + the number of levels significantly better than this one; ``tied_with`` names the levels it
    cannot be told apart from and ``beats`` those it is significantly better than (both in ranking order);
    ``differences[other]`` is the interval of ``this - other`` on the metric that decided it (paired by seed,
    or Welch's where they share fewer than two seeds)."""
    label: str
    interval: Interval
    rank: int
    tied_with: tuple[str, ...]
    beats: tuple[str, ...] = ()
    differences: Mapping[str, Interval] = field(default_factory=lambda: MappingProxyType({}), hash=False,
                                                repr=False)


def rank_levels(values: Mapping[str, Mapping[int, float]], higher_is_better: bool = True,
                confidence: float = 0.95) -> list[Ranked]:
    """Rank the levels of a study (``values[level][seed]``, e.g. each seed's Δm), best mean first.

    Two levels cannot be told apart when the interval of their difference does not exclude 0: the paired
    interval over the seeds they share, or Welch's interval when they share fewer than two. A level's rank is
    1 + the number of levels significantly better than it, so levels that nothing separates share a rank
    (A clearly best, B and C inseparable: 1, 2, 2). Ties need not be transitive (A~B, B~C, A better than C:
    1, 1, 2), and a noisy level can keep rank 1 below a precise one that something beats.

    Each pair is tested at ``confidence`` with no correction for the number of pairs: with many levels, some
    'significant' differences are luck. A level with no usable value (all its runs failed) is listed last,
    ranked behind every level that has one, and tied with none: there is nothing to compare."""
    _check_confidence(confidence)
    labels = list(values)
    intervals = {k: mean_ci(values[k].values(), confidence) for k in labels}
    sign = 1.0 if higher_is_better else -1.0
    with_data = [k for k in labels if intervals[k].n > 0]
    # best mean first; stable, so equal means keep the caller's order
    order = sorted(with_data, key=lambda k: -sign * intervals[k].mean)
    order += [k for k in labels if intervals[k].n == 0]

    diffs: dict[str, dict[str, Interval]] = {k: {} for k in labels}
    for i, x in enumerate(with_data):
        for y in with_data[i + 1:]:
            d = paired_difference(values[x], values[y], confidence)
            if d.n < 2:
                d = _welch_difference(list(values[x].values()), list(values[y].values()), confidence)
            diffs[x][y] = d
            diffs[y][x] = Interval(-d.mean, -d.high, -d.low, d.n, d.std)

    def better(x: str, y: str) -> bool:  # x significantly better than y
        d = diffs[x].get(y)
        return d is not None and (d.low > 0 if higher_is_better else d.high < 0)

    out = []
    for k in order:
        if intervals[k].n == 0:
            out.append(Ranked(k, intervals[k], len(with_data) + 1, (), (), MappingProxyType({})))
            continue
        rank = 1 + sum(better(o, k) for o in with_data if o != k)
        tied = tuple(o for o in order if o != k and o in diffs[k] and not better(o, k) and not better(k, o))
        beats = tuple(o for o in order if better(k, o))
        out.append(Ranked(k, intervals[k], rank, tied, beats, MappingProxyType(dict(diffs[k]))))
    return out


def verdict(ranked: Sequence[Ranked], metric: str = "Δm", unit: str = "points", seeds: int | None = None) -> str:
    """One plain sentence on top of a study's table, from ``rank_levels``' result, e.g.
    "nash_mtl beats ew on Δm by 4.1 ± 1.3 points over 5 seeds; cagrad and pcgrad cannot be told apart."

    It states the best level against the closest level it significantly beats (the difference ± its
    half-width) and names the groups of neighbouring levels that cannot be told apart (every pair within a
    group is inseparable, so each statement is true on its own). ``seeds`` defaults to the levels' counts."""
    unit = f" {unit}" if unit else ""  # a unitless metric reads "by 0.021 ± 0.004 over 5 seeds"
    live = [r for r in ranked if r.interval.n > 0]
    empty = [r.label for r in ranked if r.interval.n == 0]
    tail = f"; no finished seed yet for {_join(empty)}" if empty else ""
    if not live:
        return f"nothing to compare on {metric} yet" + tail + "." if empty else "nothing to compare yet."
    n_text = _seeds_text(seeds, [r.interval.n for r in live])
    if len(live) == 1:
        r = live[0]
        return (f"only {r.label} so far: {metric} {r.interval}{unit} over {n_text}, "
                f"nothing to compare it with{tail}.")
    groups = _groups(live)
    if len(groups) == 1:
        names = [r.label for r in live]
        if len(names) == 2:
            return f"at {n_text}, {names[0]} and {names[1]} cannot be told apart on {metric}{tail}."
        return f"at {n_text}, none of {', '.join(names)} can be told apart on {metric}{tail}."

    best = live[0]
    clauses = []
    top, rest = (groups[0], groups[1:]) if len(groups[0]) > 1 else (None, groups)
    if top is not None:
        clauses.append(f"{_join([r.label for r in top])} cannot be told apart on {metric} at {n_text}")
    beaten = next((r for r in live[1:] if r.label in best.beats), None)
    if beaten is None:
        clauses.append(f"{best.label} has the best {metric} at {n_text} but beats no other level significantly")
    else:
        d = best.differences[beaten.label]
        lead = _format(abs(d.mean), d.half_width, d.n)
        if top is None:
            clauses.append(f"{best.label} beats {beaten.label} on {metric} by {lead}{unit} over {n_text}")
        else:
            clauses.append(f"{best.label} beats {beaten.label} by {lead}{unit}")
    clauses += [f"{_join([r.label for r in g])} cannot be told apart" for g in rest if len(g) > 1]
    return "; ".join(clauses) + tail + "."


def _groups(live: Sequence[Ranked]) -> list[list[Ranked]]:
    """Neighbouring levels in ranking order, greedily grouped so that every pair in a group is tied."""
    groups: list[list[Ranked]] = []
    for r in live:
        if groups and all(g.label in r.tied_with for g in groups[-1]):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


# ----------------------------------------------------------------------------------------- Pareto


def pareto_mask(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[bool]:
    """True for the points no other point dominates (Pareto optimal), in any number of objectives.

    ``q`` dominates ``p`` when ``q`` is at least as good on every objective and better on one (e.g. Deb,
    'Multi-Objective Optimization Using Evolutionary Algorithms', 2001). Equal points do not dominate each
    other, so duplicates on the front are all True. A point with a NaN (or None) coordinate is never on the
    front and dominates nothing."""
    if len(points) == 0:
        return []
    arr = np.array([[math.nan if v is None else float(v) for v in p] for p in _check_points(points, maximize)],
                   dtype=float)  # (N, K)
    signs = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)  # (K,)
    good = arr * signs  # (N, K) larger is better on every objective
    valid = ~np.isnan(good).any(axis=1)  # (N,)
    g = good[valid]  # (M, K)
    geq = (g[:, None, :] >= g[None, :, :]).all(axis=2)  # (M, M) q >= p everywhere
    gt = (g[:, None, :] > g[None, :, :]).any(axis=2)  # (M, M) q > p somewhere
    dominated = (geq & gt).any(axis=0)  # (M,) some q dominates p
    mask = np.zeros(len(points), dtype=bool)
    mask[np.flatnonzero(valid)] = ~dominated
    return mask.tolist()


# ---------------------------------------------------------------------------------------- helpers


def _check_points(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> Sequence[Sequence[float]]:
    k = len(maximize)
    for i, p in enumerate(points):
        if len(p) != k:
            raise ValueError(f"point {i} has {len(p)} values but maximize has {k}; give one direction per "
                             f"objective (True to maximise, False to minimise)")
    return points


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


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _seeds_text(seeds: int | None, counts: Sequence[int]) -> str:
    if seeds is not None:
        return f"{seeds} seed" + ("" if seeds == 1 else "s")
    lo, hi = min(counts), max(counts)
    return f"{hi} seed" + ("" if hi == 1 else "s") if lo == hi else f"{lo} to {hi} seeds"


def is_finite(x: object) -> bool:
    """Whether ``x`` is a finite number (None, NaN, inf and text are not)."""
    try:
        return x is not None and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def finite_or_none(x: object) -> float | None:
    """``x`` as a float, or None where it is not a finite number (JSON and SQL have no NaN)."""
    return float(x) if is_finite(x) else None  # type: ignore[arg-type]
