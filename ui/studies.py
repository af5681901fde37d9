"""What the Studies page reads off the store and shows in its table, kept out of the page so it
reads top to bottom: a study's state in words, its progress, which of its runs are alive, the
baselines as levels for their curves, and the table as shown and as downloaded."""
from __future__ import annotations

from typing import Any

import pandas as pd

from mtl_core.errors import MTLError
from mtl_core.store.status import ACTIVE, RunStatus
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec, planned_runs
from mtl_core.studies.store import trials_asked
from mtl_core.studies.summary import Level, baseline_labels
from ui.state import manager


def study_alive(plan: list[dict], check: bool = True, study_id: str = "") -> bool:
    """Whether a run of the study is queued or training (``check``: and its trainer still beats),
    or (``study_id``) its search is still asking for trials in this process."""
    return any(row["run"] is not None and row["run"]["status"] in ACTIVE
               and (not check or manager().is_active(row["run_id"])) for row in plan) \
        or (bool(study_id) and StudyRunner(manager()).searching(study_id))


def study_state(study: dict, counts: dict[str, int], alive: bool, plan: list[dict] | None = None) -> str:
    """What a person needs to know of a study: training, paused, finished, stopped, interrupted
    (nothing trains, yet runs are missing, or a search's trials: carry on), or ended with failures."""
    done, total = counts.get(RunStatus.FINISHED, 0), counts["total"]
    if alive:
        return "paused" if study["state"] == "paused" else "training"
    trials = int((study["spec"].get("search") or {}).get("trials", 0) or 0)
    searched = not trials or plan is None or trials_asked(plan) >= trials
    if total and done == total and (searched or study["state"] == "finished"):
        return "finished"
    if study["state"] == "stopped":
        return "stopped"
    if counts.get(RunStatus.FAILED) and done + counts[RunStatus.FAILED] == total:
        return "ended with failures"
    return "interrupted"


def progress_text(counts: dict[str, int], search: str = "") -> str:
    done, total = counts.get(RunStatus.FINISHED, 0), counts["total"]
    parts = [f"{done} of {total} runs finished"] + ([search] if search else [])
    running = counts.get(RunStatus.RUNNING, 0) + counts.get(RunStatus.PAUSED, 0)
    if running:
        parts.append(f"{running} training" if not counts.get(RunStatus.PAUSED) else
                     f"{counts.get(RunStatus.RUNNING, 0)} training, {counts[RunStatus.PAUSED]} paused")
    if counts.get(RunStatus.QUEUED):
        parts.append(f"{counts[RunStatus.QUEUED]} queued")
    if counts.get(RunStatus.FAILED):
        parts.append(f"{counts[RunStatus.FAILED]} failed")
    ended = counts.get(RunStatus.STOPPED, 0) + counts.get(RunStatus.INTERRUPTED, 0) + counts.get("planned", 0)
    if ended:
        parts.append(f"{ended} to carry on")
    return " · ".join(parts)


def drawn_with(study: dict, plan: list[dict]) -> tuple:
    """What the page is drawn from: it reruns once when this changes (a run started, ended, was replaced)."""
    return study["state"], tuple((row["key"], row["run_id"], row["run"]["status"] if row["run"] else None)
                                 for row in plan)


def baseline_levels(spec: StudySpec, plan: list[dict]) -> list[Level]:
    """The single-task baselines as levels (one per task, or per task and width ...), for their curves."""
    try:
        names = baseline_labels([p for p in planned_runs(spec, plan) if p.role == "baseline"])
    except MTLError:
        return []
    out: dict[str, Level] = {}
    for row in plan:
        if row["role"] != "baseline" or row["key"] not in names:
            continue
        name = f"{names[row['key']]} alone"
        lv = out.setdefault(name, Level(name, {"task": row["task"]}, []))
        lv.seeds.append(row["seed"])
        if row["run_id"]:
            lv.run_ids[row["seed"]] = row["run_id"]
    return list(out.values())


def csv_table(summary: Any, rows: list[dict], seeds: int) -> pd.DataFrame:
    """``summary.table`` with the baselines' rows (each in its task's columns): plain numbers, for the CSV."""
    rows = [dict(r) for r in rows]
    for name, iv in summary.baselines.items():
        task = name.split(" ")[0]
        rows.append({"level": f"baseline: {name}", "seeds finished": f"{iv.n} of {seeds}",
                     f"{task} {summary.primary.get(task, '')}": iv.mean,
                     f"{task} ± 95% CI": iv.half_width if iv.n > 1 else None})
    return pd.DataFrame(rows)


def ci_text(iv: Any) -> str | None:
    """``0.354 ± 0.018`` (the half-width of the 95% CI); one seed has no interval to give."""
    if iv is None or iv.n == 0:
        return None
    return f"{iv.mean:.4g} (1 seed)" if iv.n == 1 else str(iv)


def shown_table(summary: Any, rows: list[dict], meta: dict, factors: list[str], seeds: int) -> pd.DataFrame:
    """What the page shows of the table: each mean with its 95% CI in one cell, the ranking next to them."""
    def metric_col(t: str) -> str:
        return f"{meta[t]['title']} {summary.primary.get(t, '')} {'↑' if summary.higher_is_better.get(t, True) else '↓'}"

    out = []
    for lv, row in zip(summary.levels, rows, strict=True):
        shown: dict[str, Any] = {"level": lv.label}
        if len(factors) > 1:
            shown.update({f: row.get(f"factor:{f}") for f in factors})
        shown.update({metric_col(t): ci_text(lv.metrics.get(t)) for t in summary.tasks})
        shown["Δm (%) ↑"] = ci_text(lv.delta_m)
        shown.update({"rank": row["rank"], "cannot be told apart from": row["cannot be told apart from"],
                      "seeds finished": row["seeds finished"], "failed": row["failed"], "seconds": row["seconds"],
                      "parameters": row["parameters"]})
        out.append(shown)
    for name, iv in summary.baselines.items():
        task = name.split(" ")[0]
        out.append({"level": f"baseline: {name}", **({metric_col(task): ci_text(iv)} if task in meta else {}),
                    "seeds finished": f"{iv.n} of {seeds}"})
    return pd.DataFrame(out)
