"""A lesson's claim, measured: a difference of one task's test metric (or Δm) between two arms of
its study, paired by seed, with its confidence interval, and whether the claim held.

An arm is ``"baseline"`` (the task's single-task baseline) or a level of the study (the factor
values that pick it, e.g. ``{"weighting.method": "uw"}``; ``{}`` when the study has one level).
The claim holds when the interval excludes zero on the side the lesson expects.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtl_core.errors import ConfigError
from mtl_core.scores import Interval, paired_difference

ARM_BASELINE = "baseline"


@dataclass(frozen=True)
class Effect:
    """What a lesson claims: ``metric(a) - metric(b)`` has sign ``sign`` (+1 or -1)."""

    task: str  # whose primary test metric; "delta_m" for Δm against the baselines
    a: Any  # "baseline" or a level selector (factor -> value)
    b: Any
    sign: int
    text: str  # what the difference is, e.g. "segmentation mIoU, MTL - STL"

    @classmethod
    def from_dict(cls, d: Any, where: str = "effect") -> Effect:
        if not isinstance(d, dict):
            raise ConfigError(where, f"expected an object with task, a, b, sign and text, got {type(d).__name__}")
        allowed = {"task", "a", "b", "sign", "text"}
        for k in d:
            if k not in allowed:
                raise ConfigError(f"{where}.{k}", f"unknown key; allowed keys: {', '.join(sorted(allowed))}")
        for k in allowed:
            if k not in d:
                raise ConfigError(f"{where}.{k}", "missing")
        if d["sign"] not in (1, -1, "+", "-"):
            raise ConfigError(f"{where}.sign", f'expected "+" or "-" (the sign the lesson claims), got {d["sign"]!r}')
        for arm in ("a", "b"):
            if d[arm] != ARM_BASELINE and not isinstance(d[arm], dict):
                raise ConfigError(f"{where}.{arm}", f'expected "baseline" or a level (factor: value), got {d[arm]!r}'[:200])
        if not isinstance(d["task"], str) or not isinstance(d["text"], str) or not d["text"]:
            raise ConfigError(f"{where}.task", "task and text are strings")
        sign = 1 if d["sign"] in (1, "+") else -1
        return cls(d["task"], d["a"], d["b"], sign, d["text"])


@dataclass(frozen=True)
class Measured:
    """The effect over the seeds in so far: the interval of the paired differences."""

    effect: Effect
    interval: Interval
    holds: bool  # the interval excludes 0 on the claimed side
    sentence: str


def arm_values(summary: Any, task: str, arm: Any) -> dict[int, float]:
    """seed -> the arm's value of ``task``'s primary test metric (or Δm), from a study summary."""
    if arm == ARM_BASELINE:
        if task == "delta_m":
            raise ConfigError("effect", "Δm compares a level with the baselines; both arms must be levels")
        return dict(summary.baseline_by_seed.get(task, {}))
    matches = [lv for lv in summary.levels if all(_same(lv.level.get(k), v) for k, v in arm.items())]
    if len(matches) != 1:
        return {}
    lv = matches[0]
    if task == "delta_m":
        return dict(lv.delta_m_by_seed)
    return {s: v[task] for s, v in lv.by_seed.items() if task in v}


def measure(summary: Any, effect: Effect, confidence: float = 0.95) -> Measured:
    """The effect as the summary stands: paired by seed, so a seed's luck cancels."""
    iv = paired_difference(arm_values(summary, effect.task, effect.a), arm_values(summary, effect.task, effect.b),
                           confidence)
    holds = iv.n >= 2 and math.isfinite(iv.low) and (iv.low > 0 if effect.sign > 0 else iv.high < 0)
    return Measured(effect, iv, holds, sentence(effect, iv, holds, confidence))


OUTCOMES = ("above", "unclear", "below")  # what a student may predict of an effect: > 0, the CI holds 0, < 0


def outcome(iv: Interval) -> str | None:
    """Which of :data:`OUTCOMES` a finished study's interval says (None before two seeds)."""
    if iv.n < 2 or not math.isfinite(iv.low):
        return None
    return "above" if iv.low > 0 else "below" if iv.high < 0 else "unclear"


def sentence(effect: Effect, iv: Interval, holds: bool, confidence: float = 0.95) -> str:
    """'segmentation mIoU, MTL - STL: +0.081 (95% CI +0.052 to +0.110, 5 seeds): shown.'"""
    if iv.n == 0:
        return f"{effect.text}: no pair of finished runs yet."
    if iv.n == 1:
        return f"{effect.text}: {iv.mean:+.3f} from one seed; a second seed gives an interval."
    pct = f"{confidence:.0%}"
    core = f"{effect.text}: {iv.mean:+.3f} ({pct} CI {iv.low:+.3f} to {iv.high:+.3f}, {iv.n} seeds)"
    if holds:
        return core + ": shown."
    if (iv.high < 0) if effect.sign > 0 else (iv.low > 0):
        return core + ": the other way round from the lesson's claim."
    return core + ": the interval still includes 0; more seeds will tell."


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
        return math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return sorted(x) == sorted(y)
    return x == y


def selects(level: Mapping[str, Any], arm: Any) -> bool:
    """Whether a level is the arm (a baseline arm selects no level)."""
    return arm != ARM_BASELINE and all(_same(level.get(k), v) for k, v in arm.items())
