"""Reading a study: per level, each task's primary test metric as mean ± 95% CI over seeds, Δm
against the single-task baselines (paired by seed) with its CI, the cost, a ranking that says
when two levels cannot be told apart, one plain sentence, and the curves of every level as a
mean with a band over its seeds.

Model selection is honest: a run's test metrics are those of its final model, scored once on
the test split after training; nothing is chosen on test (runs are compared on test, trained and
monitored on validation).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtl_core.protocols.selection import BEST_SPLIT, USE_WORDS, reported_metrics
from mtl_core.scores import (
    Interval,
    Ranked,
    delta_m_per_seed,
    finite_or_none,
    mean_ci,
    pareto_mask,
    rank_levels,
    verdict,
)
from mtl_core.store.status import RunStatus
from mtl_core.store.store import RunStore
from mtl_core.studies.spec import Planned, StudySpec, plan_key, planned_runs
from mtl_core.studies.store import StudyStore
from mtl_core.tasks import task_meta


@dataclass
class Level:
    """One combination of factor values, over its seeds."""

    label: str
    level: dict[str, Any]
    seeds: list[int]  # the seeds planned
    finished: list[int] = field(default_factory=list)  # the seeds whose run finished
    failed: list[int] = field(default_factory=list)
    run_ids: dict[int, str] = field(default_factory=dict)  # seed -> run
    metrics: dict[str, Interval] = field(default_factory=dict)  # task -> primary test metric over seeds
    by_seed: dict[int, dict[str, float]] = field(default_factory=dict)  # seed -> task -> primary test metric
    delta_m: Interval | None = None
    delta_m_by_seed: dict[int, float] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)  # training seconds of each finished run
    seconds: Interval | None = None  # over them
    params: int | None = None


@dataclass
class StudySummary:
    study: dict[str, Any]
    tasks: list[str]
    primary: dict[str, str]
    higher_is_better: dict[str, bool]
    levels: list[Level]
    # each single-task baseline's primary test metric over seeds, by "task" (or "task (model.width=8)"
    # where a factor such as the width gives a task several baselines)
    baselines: dict[str, Interval]
    ranked_on: str  # what the ranking compares, e.g. "Δm against the single-task baselines"
    ranking: list[Ranked]
    sentence: str
    progress: dict[str, int]
    baseline_by_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # name -> seed -> metric
    task_specs: dict[str, Any] = field(default_factory=dict)  # what each task is, as its runs recorded it
    use: str = "best"  # which model of each run the numbers are (mtl_core.protocols.selection): best, last, mean_last
    benchmark: str = ""  # the protocol preset the study's runs follow (its published numbers), if any

    @property
    def selection(self) -> str:
        """Which model of each run the numbers are, in words ("best on validation")."""
        return USE_WORDS.get(self.use, self.use)


def baseline_labels(baselines: list[Planned]) -> dict[str, str]:
    """key -> a baseline's name in the summary: its task, and what sets it apart from the task's
    other baselines (seeds aside), e.g. ``segmentation (model.width=8)``."""
    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    fields = {p.key: {k: v for k, v in flat(p.config.to_dict()).items() if k not in ("seed", "name", "baseline_of")}
              for p in baselines}
    out = {}
    for p in baselines:
        same_task = [fields[q.key] for q in baselines if q.task == p.task]
        differ = sorted({k for f in same_task for k in f if any(g.get(k) != f.get(k) for g in same_task)})
        out[p.key] = p.task + (f" ({', '.join(f'{k}={_fmt(fields[p.key].get(k))}' for k in differ)})" if differ else "")
    return out


def test_metrics(store: RunStore, run: dict[str, Any], use: str = "") -> dict[str, float]:
    """A run's test metrics, ``{"<task>/<metric>": value}``, of the model ``use`` picks (best on
    validation, last, or the mean of the last evaluations; default: the run's own rule). A run
    with no test metrics (it stopped early) has none here."""
    rows = [r for split in ("test", BEST_SPLIT) for r in store.metrics(run["id"], split=split)]
    report = reported_metrics(rows, run.get("config"), use)
    return {k: v for k, v in report.values.items() if v == v} if report.split in ("test", BEST_SPLIT) else {}


def _task_meta(tasks: list[str], specs: dict[str, Any] | None = None) -> tuple[dict[str, str], dict[str, bool]]:
    meta = task_meta(tasks, specs)
    return {t: m["primary"] for t, m in meta.items()}, {t: m["higher_is_better"] for t, m in meta.items()}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(str(x) for x in v)
    return str(v)


def summarize(store: RunStore, study_id: str, confidence: float = 0.95, use: str = "") -> StudySummary:
    """Everything the Studies view and ``study show`` print, from what the store holds now (a
    study still training gives the seeds finished so far). Each run counts with the model ``use``
    picks (``best``, ``last``, ``mean_last``); default: the rule the study's base config names."""
    studies = StudyStore(store)
    study = studies.require(study_id)
    spec = StudySpec.from_dict(study["spec"])
    plan = studies.plan(study_id)
    planned = {p.key: p for p in planned_runs(spec, plan)}
    baseline_names = baseline_labels([p for p in planned.values() if p.role == "baseline"])
    # a search's trials vary settings its baselines keep at the base config's: pair them with those
    base_cfg = spec.base_config()
    use = use or base_cfg.select.use
    tasks = list(dict.fromkeys(t for p in planned.values() for t in p.config.tasks))
    # what each task is: a label table's columns are resolved in the configs the runs recorded
    specs = {t: sp for p in planned.values() for t, sp in p.config.task_specs.items()}
    for row in plan:
        specs.update((row["run"] or {}).get("config", {}).get("task_specs") or {})
    primary, hib = _task_meta(tasks, specs)
    # baselines: task -> seed -> value, and by key, so a trial finds its own (same width, data, seed)
    base_by_key: dict[str, float] = {}
    base_values: dict[str, list[float]] = {}
    base_seeds: dict[str, dict[int, float]] = {}
    progress: dict[str, int] = {"total": len(plan)}
    levels: dict[str, Level] = {}
    for row in plan:
        run = row["run"]
        status = run["status"] if run is not None else "planned"
        progress[status] = progress.get(status, 0) + 1
        p = planned.get(row["key"])
        if p is not None and row["role"] == "baseline" and run is not None and status == RunStatus.FINISHED:
            value = test_metrics(store, run, use).get(f"{p.task}/{primary.get(p.task, '')}")
            if value is not None:
                base_by_key[row["key"]] = value
                base_values.setdefault(baseline_names[row["key"]], []).append(value)
                base_seeds.setdefault(baseline_names[row["key"]], {})[p.seed] = value
    for row in plan:  # the trials, once every baseline is known
        run = row["run"]
        status = run["status"] if run is not None else "planned"
        p = planned.get(row["key"])
        if p is None or row["role"] == "baseline":
            continue
        label = p.label
        lv = levels.setdefault(label, Level(label, dict(p.level), []))
        lv.seeds.append(p.seed)
        if run is None:
            continue
        lv.run_ids[p.seed] = run["id"]
        if status == RunStatus.FAILED:
            lv.failed.append(p.seed)
        if status != RunStatus.FINISHED:
            continue
        lv.finished.append(p.seed)
        values = test_metrics(store, run, use)
        lv.by_seed[p.seed] = {t: values[f"{t}/{primary[t]}"] for t in p.config.tasks if f"{t}/{primary.get(t)}" in values}
        info = run.get("info") or {}
        if info.get("elapsed_s") is not None:
            lv.durations.append(float(info["elapsed_s"]))
        lv.params = info.get("params", lv.params)
        baselines = {}
        own = p.config.single_task_baselines("")
        if spec.search:
            own = [dataclasses.replace(b, seed=p.seed) for b in base_cfg.single_task_baselines("")]
        for b in own:
            value = base_by_key.get(plan_key(b))
            if value is not None:
                baselines[b.tasks[0]] = value
        if len(baselines) == len(p.config.tasks):
            lv.delta_m_by_seed[p.seed] = next(iter(delta_m_per_seed({p.seed: lv.by_seed[p.seed]}, {p.seed: baselines},
                                                                    hib).values()), float("nan"))
    for lv in levels.values():
        for t in tasks:
            vals = [v[t] for v in lv.by_seed.values() if t in v]
            if vals:
                lv.metrics[t] = mean_ci(vals, confidence)
        if lv.delta_m_by_seed:
            lv.delta_m = mean_ci(list(lv.delta_m_by_seed.values()), confidence)
        lv.seconds = mean_ci(lv.durations, confidence) if lv.durations else None
    ordered = list(levels.values())
    ranked_on, scores = _ranking_scores(ordered, tasks, hib)
    ranking = rank_levels(scores, higher_is_better=True, confidence=confidence) if scores else []
    sentence = verdict(ranking, metric=ranked_on.split(" ")[0], unit="points" if ranked_on.startswith("Δm") else "",
                       seeds=None) if ranking else "No level has a finished run yet."  # None: the seeds actually in
    return StudySummary(study=study, tasks=tasks, primary=primary, higher_is_better=hib, levels=ordered,
                        baselines={t: mean_ci(v, confidence) for t, v in base_values.items()},
                        ranked_on=ranked_on, ranking=ranking, sentence=sentence, progress=progress,
                        baseline_by_seed=base_seeds, task_specs=specs, use=use, benchmark=base_cfg.benchmark)


def _ranking_scores(levels: list[Level], tasks: list[str], hib: Mapping[str, bool]) -> tuple[str, dict[str, dict[int, float]]]:
    """What the levels are ranked on (higher is better): Δm against the single-task baselines
    when they are there; else, for one task, its primary metric (negated when lower is better);
    else Δm against the first level, seed by seed."""
    if any(lv.delta_m_by_seed for lv in levels):
        return "Δm against the single-task baselines (%)", {lv.label: lv.delta_m_by_seed for lv in levels if lv.delta_m_by_seed}
    done = [lv for lv in levels if lv.by_seed]
    if not done:
        return "", {}
    if len(tasks) == 1:
        t = tasks[0]
        sign = 1.0 if hib.get(t, True) else -1.0
        return f"{t} primary metric", {lv.label: {s: sign * v[t] for s, v in lv.by_seed.items() if t in v} for lv in done}
    ref = done[0]
    scores = {}
    for lv in done:
        per_seed = delta_m_per_seed(lv.by_seed, ref.by_seed, hib)
        if per_seed:
            scores[lv.label] = per_seed
    return f"Δm against {ref.label} (%)", scores


def table(summary: StudySummary) -> list[dict[str, Any]]:
    """One row per level: seeds, each task's primary metric (mean, CI), Δm, seconds, parameters,
    rank. Plain values, for a data frame, CSV or JSON."""
    rank = {r.label: r for r in summary.ranking}
    rows = []
    for lv in summary.levels:
        row: dict[str, Any] = {"level": lv.label, **{f"factor:{k}": _fmt(v) for k, v in lv.level.items()},
                               "seeds finished": f"{len(lv.finished)} of {len(lv.seeds)}",
                               "failed": len(lv.failed)}
        for t in summary.tasks:
            iv = lv.metrics.get(t)
            row[f"{t} {summary.primary.get(t, '')}"] = finite_or_none(iv.mean) if iv else None
            row[f"{t} ± 95% CI"] = _half(iv)
        row["Δm (%)"] = finite_or_none(lv.delta_m.mean) if lv.delta_m else None
        row["Δm ± 95% CI"] = _half(lv.delta_m)
        row["seconds"] = finite_or_none(lv.seconds.mean) if lv.seconds else None
        row["parameters"] = lv.params
        r = rank.get(lv.label)
        row["rank"] = r.rank if r else None
        row["cannot be told apart from"] = ", ".join(r.tied_with) if r else ""
        rows.append(row)
    return rows


def _half(iv: Interval | None) -> float | None:
    """A CI's half-width; None where there is none to give (no value, or one seed: unbounded)."""
    return iv.half_width if iv is not None and np.isfinite(iv.half_width) else None


def pareto_levels(summary: StudySummary, tasks: list[str] | None = None) -> list[bool]:
    """Which levels lie on the Pareto front of the tasks' mean primary metrics (each in its own
    direction); levels missing a task's metric are not on it."""
    tasks = tasks or summary.tasks
    points = [[lv.metrics[t].mean if t in lv.metrics else float("nan") for t in tasks] for lv in summary.levels]
    return pareto_mask(points, [summary.higher_is_better.get(t, True) for t in tasks]) if points else []


def level_curves(store: RunStore, level: Level, split: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One series of a level over its seeds' runs: ``(steps, mean, std, n)`` on the steps every
    run has reached so far (a band of ± one standard deviation; ``n`` the number of runs)."""
    series = []
    for run_id in level.run_ids.values():
        rows = store.metrics(run_id, split=split, key=key)
        if rows:
            series.append({r[0]: (float("nan") if r[3] is None else float(r[3])) for r in rows})
    if not series:
        empty = np.array([])
        return empty, empty, empty, 0
    steps = sorted(set.intersection(*(set(s) for s in series)))
    values = np.array([[s[k] for k in steps] for s in series], dtype=float)  # (runs, steps)
    std = values.std(axis=0, ddof=1) if len(series) > 1 else np.zeros(len(steps))
    return np.asarray(steps), values.mean(axis=0), std, len(series)


def to_json(summary: StudySummary) -> str:
    """The summary's table, ranking and sentence as JSON (for a download)."""
    return json.dumps({"study": {k: summary.study[k] for k in ("id", "name", "spec")}, "ranked_on": summary.ranked_on,
                       "sentence": summary.sentence, "levels": table(summary), "progress": summary.progress},
                      indent=2, default=str, allow_nan=False)
