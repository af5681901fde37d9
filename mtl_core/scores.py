"""The multi-task score Δm (Maninis, Radosavovic and Kokkinos, 'Attentive Single-Tasking of
Multiple Tasks', CVPR 2019; Vandenhende et al., 'Multi-Task Learning for Dense Prediction
Tasks: A Survey', TPAMI 2021): the mean over tasks of the signed relative change of each task's
primary metric against a baseline, in percent; positive = better than the baseline."""
from __future__ import annotations

import math
from collections.abc import Mapping


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


def _finite(x: object) -> bool:
    try:
        return x is not None and math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
