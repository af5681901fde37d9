"""Which validation evaluation of a run is its best so far, by its config's rule
(:mod:`mtl_core.protocols.selection`), and at which steps ``mean_last`` scores the test split.

The trainer asks :meth:`BestSoFar.improves` at every validation evaluation and keeps that model as
``best.pt`` when it does; the state travels in every checkpoint so a resumed run goes on comparing
with the best it kept before it stopped.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtl_core.config import ExperimentConfig, SelectConfig
from mtl_core.protocols.selection import evaluation_score


class BestSoFar:
    """The best validation score of a run so far and its step; the reference Δm is measured
    against when the config names none (the run's first evaluation, as LibMTL does)."""

    def __init__(self, select: SelectConfig, tasks: Mapping[str, Any]) -> None:
        self.select = select
        self.tasks = list(tasks)
        self.primary = {t: task.primary for t, task in tasks.items()}
        self.higher_is_better = {t: task.higher_is_better for t, task in tasks.items()}
        self.score: float | None = None
        self.step: int | None = None
        self.reference: dict[str, float] = {}

    def improves(self, values: Mapping[str, float], step: int) -> bool:
        """Whether the evaluation at ``step`` scores better than every earlier one (ties keep the
        earlier: a later model must be better to win); if so it becomes the best."""
        if not self.reference:
            self.reference = {t: values[f"{t}/{m}"] for t, m in self.primary.items() if f"{t}/{m}" in values}
        score = evaluation_score(values, self.select, self.tasks, self.primary, self.higher_is_better, self.reference)
        if score is None or (self.score is not None and score <= self.score):
            return False
        self.score, self.step = float(score), int(step)
        return True

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it."""
        return {"reference": dict(self.reference),
                **({"score": self.score, "step": self.step} if self.score is not None else {})}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Back to what a checkpoint kept (:meth:`state`)."""
        self.reference = {k: float(v) for k, v in (state.get("reference") or {}).items()}
        if "score" in state:
            self.score, self.step = float(state["score"]), int(state["step"])


def mean_last_steps(cfg: ExperimentConfig) -> set[int]:
    """With ``select.use = mean_last``, the steps of the last ``last_k`` planned evaluations, where
    the test split is scored too (a run cut short by its time limit has only its last)."""
    if cfg.select.use != "mean_last":
        return set()
    n = cfg.optim.steps
    planned = set(range(cfg.eval_every, n, cfg.eval_every)) | ({cfg.first_eval} if 0 < cfg.first_eval < n else set())
    return set(sorted(planned | {n})[-cfg.select.last_k:])
