"""Model selection on validation: which evaluation of a run is its best, and which numbers it reports.

A run keeps its last model and, beside it, the model of the validation evaluation that scored
best by its config's ``select.rule`` (``best.pt``); at the end it scores both on the test split
(split ``test`` for the last model, ``test_best`` for the best, logged at the best model's step).
Which one the run reports, predicts with and is compared by is ``select.use`` (or what a page or
a study asks for): ``best``, ``last``, or ``mean_last`` (the mean of the test metrics at the
last ``last_k`` evaluations, Nash-MTL's protocol). Pure functions over metric rows, no torch, so
pages and studies read them without loading a model.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mtl_core.config import SELECT_USES, ExperimentConfig, SelectConfig
from mtl_core.scores import delta_m

Row = tuple  # (step, split, key, value, wall) as RunStore.metrics returns them
BEST_SPLIT = "test_best"  # the test metrics of the best-on-validation model
USE_WORDS = {"best": "best on validation", "last": "last step", "mean_last": "mean of the last evaluations"}


def rule_of(select: SelectConfig, tasks: Iterable[str]) -> str:
    """The rule ``select`` applies to a run of ``tasks``: ``auto`` resolved."""
    if select.rule != "auto":
        return select.rule
    return "primary" if len(list(tasks)) == 1 else "delta_m"


def evaluation_score(values: Mapping[str, float], select: SelectConfig, tasks: list[str],
                     primary: Mapping[str, str], higher_is_better: Mapping[str, bool],
                     reference: Mapping[str, float] | None = None) -> float | None:
    """How good one validation evaluation (``{"<task>/<metric>": value}``) is by ``select``'s rule,
    higher = better; ``None`` when it cannot say (a metric missing or not finite).

    ``primary``: the task's primary metric's value, negated where lower is better. ``delta_m``:
    Δm in percent of the tasks' primary metrics against ``select.reference`` or, for the tasks
    it does not name, ``reference`` (the run's first evaluation)."""
    rule = rule_of(select, tasks)
    if rule == "primary":
        task = select.task or tasks[0]
        v = values.get(f"{task}/{primary[task]}")
        if v is None or not math.isfinite(v):
            return None
        return float(v) if higher_is_better.get(task, True) else -float(v)
    metrics = {t: values.get(f"{t}/{primary[t]}") for t in tasks}
    if any(v is None or not math.isfinite(v) for v in metrics.values()):
        return None
    base = {**(reference or {}), **select.reference}
    return delta_m(metrics, base, higher_is_better)


@dataclass(frozen=True)
class Reported:
    """What a run reports: its metrics, where they come from, and the words that say so."""

    values: dict[str, float]
    split: str | None  # "test", "test_best", "val" or None (nothing evaluated yet)
    step: int | None
    use: str  # the rule that was applied ("best", "last", "mean_last"; "val" while it trains)
    how: str  # "best on validation (step 400)", "last step (900)", ...


def _by_split(rows: Iterable[Row]) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for step, split, key, value, *_ in rows:
        if split in ("val", "test", BEST_SPLIT):
            out.setdefault(split, {}).setdefault(int(step), {})[key] = float("nan") if value is None else float(value)
    return out


def use_of(config: ExperimentConfig | Mapping[str, Any] | None, use: str = "") -> tuple[str, int]:
    """``(use, last_k)``: ``use`` when given, else the run's config's ``select.use``."""
    sel = config.select if isinstance(config, ExperimentConfig) else \
        SelectConfig(**{k: v for k, v in ((config or {}).get("select") or {}).items()
                        if k in SelectConfig.__dataclass_fields__})
    use = use or sel.use
    return (use if use in SELECT_USES else "best"), max(1, int(sel.last_k))


def reported_metrics(rows: Iterable[Row], config: ExperimentConfig | Mapping[str, Any] | None = None,
                     use: str = "") -> Reported:
    """A run's reported metrics from its metric rows (every split), by ``use`` or its config's.

    ``best``: the best model's test metrics; a run that kept none (made before model selection,
    or stopped before its end) reports its last model's, and says so. ``last``: the test metrics
    at the last step. ``mean_last``: the mean of the test metrics of the last ``last_k``
    evaluations that have them. A run without test metrics yet reports its last validation."""
    use, k = use_of(config, use)
    by = _by_split(rows)
    test, best, val = by.get("test", {}), by.get(BEST_SPLIT, {}), by.get("val", {})
    if use == "best" and best:
        step = max(best)
        return Reported(dict(best[step]), BEST_SPLIT, step, "best", f"best on validation (step {step})")
    if use == "mean_last" and test:
        steps = sorted(test)[-k:]
        keys = set.intersection(*(set(test[s]) for s in steps))
        values = {key: sum(test[s][key] for s in steps) / len(steps) for key in keys}
        span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]}"
        return Reported(values, "test", steps[-1], "mean_last", f"mean of the last {len(steps)} evaluations ({span})")
    if test:
        step = max(test)
        why = "" if use == "last" else " (no best model kept)"
        return Reported(dict(test[step]), "test", step, "last", f"last step ({step}){why}")
    if val:
        step = max(val)
        return Reported(dict(val[step]), "val", step, "val", f"validation at step {step} (no test yet)")
    return Reported({}, None, None, use, "not evaluated yet")


def pick_checkpoint(checkpoints: list[dict[str, Any]], use: str) -> dict[str, Any] | None:
    """The checkpoint a run predicts with under ``use``: ``best.pt`` for ``best`` when it has one,
    else its final one, else its latest (by step); each entry gains ``"chosen"``, the words that
    say which it is. ``checkpoints``: ``RunStore.checkpoints`` rows whose files exist."""
    if not checkpoints:
        return None
    by_kind: dict[str, dict[str, Any]] = {}
    for ck in checkpoints:  # in step order: the last of each kind wins
        by_kind[ck["kind"]] = ck
    if use == "best" and "best" in by_kind:
        ck = by_kind["best"]
        return {**ck, "chosen": f"best on validation (step {ck['step']})"}
    trained = [ck for ck in checkpoints if ck["kind"] != "best"]
    ck = by_kind.get("final") or (trained[-1] if trained else checkpoints[-1])
    words = "final" if ck["kind"] == "final" else "latest"
    why = " (no best model kept)" if use == "best" else ""
    return {**ck, "chosen": f"{words} (step {ck['step']}){why}"}
