"""Compare runs: a table of the runs (found by a search, a study and a status filter, grouped by
study, the newest 50 by default), their curves overlaid per task, final metrics with the
multi-task score Δm (Maninis et al., 2019) against a chosen baseline run and against each
multi-task run's own single-task baselines (trained from here), a two-task trade-off scatter
with its Pareto front, an ensemble of the compared runs scored beside its members, CSV
download and deletion (of the runs the filters show).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.inference.ensemble import BOX_FUSIONS, CLASS_FUSIONS, Ensemble, evaluate_members_and_ensemble
from mtl_core.protocols.benchmarks import Preset, load_preset, published_delta_m
from mtl_core.protocols.selection import BEST_SPLIT
from mtl_core.store.status import ACTIVE, RunStatus
from mtl_core.tasks import task_meta
from ui.charts import TaskMeta, colors, compare_figure, pareto_figure
from ui.entry import through_app
from ui.metrics import (
    delta_m,
    delta_m_vs_single_task,
    final_report,
    format_duration,
    primary_values,
    run_duration,
    single_task_baselines,
)
from ui.roles import refused, why_not
from ui.run_delete import delete_runs
from ui.run_list import filter_widgets, filtering, find, grouped, shown_caption
from ui.sidebar import model_checkpoint
from ui.state import manager, runs_dir

through_app()  # a link opened first on a fresh server: rerun through app.py

DEFAULT_COMPARED = 8  # finished runs compared when none is picked in the table
TABLE_ROWS = (50, 200, 1000)  # runs in the table at most, the first by default: the newest that pass the filters
BASELINES = 200  # single-task baselines of the compared runs read at most
FILTERS = "compare_runs"  # the filters' widget keys start with this
CLASS_FUSION_LABELS = {"average": "average probabilities", "vote": "weighted vote"}
BOX_FUSION_LABELS = {"wbf": "weighted boxes fusion", "nms": "NMS"}


@dataclass(frozen=True)
class Scores:
    """What the tables and charts know of every task the listed runs learn: its chart metadata,
    its primary metric (tasks that have one) and whether higher is better."""

    meta: dict[str, TaskMeta]
    primary: dict[str, str]
    hib: dict[str, bool]

    @classmethod
    def of(cls, runs: list[dict]) -> Scores:
        tasks = list(dict.fromkeys(t for r in runs for t in r["config"].get("tasks", [])))
        specs = {t: sp for r in runs for t, sp in (r["config"].get("task_specs") or {}).items()}
        meta = {t: TaskMeta(t, **m) for t, m in task_meta(tasks, specs).items()}
        return cls(meta, {t: m.primary for t, m in meta.items() if m.primary},
                   {t: m.higher_is_better for t, m in meta.items()})

    def column(self, task: str, metric: str) -> str:
        """A metric's column title, with the direction arrow on a task's primary metric."""
        arrow = ("↑" if self.hib.get(task, True) else "↓") if self.primary.get(task) == metric else ""
        return f"{task} · {metric}{arrow}"


USE_LABELS = {"": "each run's own rule", "best": "best on validation", "last": "last step",
              "mean_last": "mean of the last evaluations"}


@st.cache_data(show_spinner=False, max_entries=2000)
def _final(root: str, run_id: str, updated: float, select: tuple[str, int], use: str) -> tuple[dict[str, float], str | None, str]:
    """A run's final metrics (test split when present, else the last validation) by ``use`` or its
    own ``select`` (use, last_k), the split, and which model; cached until the run changes."""
    s = manager().store
    rows = s.metrics(run_id, split="test") + s.metrics(run_id, split=BEST_SPLIT) + s.metrics(run_id, split="val")
    report = final_report(rows, {"select": {"use": select[0], "last_k": select[1]}}, use)
    return report.values, ("test" if report.split in ("test", BEST_SPLIT) else report.split), report.how


def _select_of(run: dict) -> tuple[str, int]:
    sel = run["config"].get("select") or {}
    return str(sel.get("use", "best")), int(sel.get("last_k", 10))


def _published_rows(compared: list[dict], scores: Scores) -> list[dict]:
    """The published rows of the protocol presets the compared runs follow, as rows of the table."""
    rows = []
    for name in dict.fromkeys(r["config"].get("benchmark") for r in compared if r["config"].get("benchmark")):
        try:
            preset = load_preset(name)
        except MTLError:
            continue
        for p in preset.published:
            row = {"run": f"published · {p.label}", "status": "published", "split": "test", "model": p.citation,
                   "Δm vs published single-task (%)": published_delta_m(p.metrics, preset)}
            row.update({scores.column(*k.split("/", 1)): v for k, v in p.metrics.items()})
            rows.append(row)
    return rows


@st.cache_data(show_spinner=False, max_entries=2000)
def _series(root: str, run_id: str, updated: float, split: str, key: str) -> tuple[list[int], list[float]]:
    rows = [r for r in manager().store.metrics(run_id, split=split, key_prefix=key) if r[2] == key]
    return [r[0] for r in rows], [float("nan") if r[3] is None else r[3] for r in rows]


def _preset_of(run: dict) -> Preset | None:
    name = run["config"].get("benchmark")
    try:
        return load_preset(name) if name else None
    except MTLError:
        return None


def _label(run: dict) -> str:
    return f"{run['name']} ({run['id'][-6:]})"


def _tasks(run: dict) -> list[str]:
    return list(run["config"].get("tasks", []))


def _is_multi_task(run: dict) -> bool:
    return len(_tasks(run)) > 1 and not run["config"].get("baseline_of")


def _start_baselines(run: dict, missing: list[str]) -> None:
    """Start the single-task baselines of ``run`` for the ``missing`` tasks (all of them the first time)."""
    try:
        started = list(manager().start_baselines(run["id"], tasks=missing).values())
        st.session_state["compare_baselines_note"] = (
            f"Started {len(started)} single-task baseline run{'s' if len(started) != 1 else ''} for {_label(run)}; "
            "follow them on **Live training**. Δm against them appears here once all have finished.")
    except MTLError as e:
        st.session_state["compare_baselines_error"] = str(e)


def _baselines_block(compared: list[dict], runs: list[dict]) -> None:
    """The button that trains a multi-task run's single-task baselines, and their state."""
    multi = [r for r in compared if r["status"] == RunStatus.FINISHED and _is_multi_task(r)]
    by_id = {r["id"]: r for r in runs}
    st.markdown("**Single-task baselines**")
    if not multi:
        st.caption("Pick a finished multi-task run in the table to train its single-task baselines: one run per task "
                   "with the same backbone, data, budget and seed, for Δm against each task learnt alone.")
        return
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    if len(multi) > 1:
        target_id = c1.selectbox("Multi-task run", [r["id"] for r in multi], key="compare_baselines_for",
                                 format_func=lambda i: _label(by_id[i]))
        target = by_id[target_id]
    else:
        target = multi[0]
        c1.markdown(f"For **{_label(target)}**")
    have = single_task_baselines(runs, target["id"])
    tasks = _tasks(target)
    done = [t for t in tasks if t in have and have[t]["status"] == RunStatus.FINISHED]
    training = [t for t in tasks if t in have and have[t]["status"] in ACTIVE]
    missing = [t for t in tasks if t not in done and t not in training]
    if not missing and training:
        reason = (f"Its baselines are training ({len(done)} of {len(tasks)} finished); "
                  "Δm against them appears once all have finished.")
    elif not missing:
        reason = "Its baselines exist already (all finished); Δm against them is the table's “Δm vs single-task” column."
    elif len(missing) < len(tasks):
        reason = f"The baselines of {', '.join(missing)} did not finish; this trains those again."
    else:
        reason = (f"Trains {len(tasks)} single-task runs ({', '.join(tasks)}) with the same backbone, data, budget "
                  "and seed, one after another as training slots free up.")
    locked = why_not("run.baselines")  # shared mode, a viewer
    c2.button("Train single-task baselines", key="compare_baselines", disabled=not missing or bool(locked),
              type="secondary", icon=":material/call_split:", help=locked or reason, on_click=_start_baselines,
              args=(target, missing))
    st.caption(reason)
    if "compare_baselines_note" in st.session_state:
        st.success(st.session_state.pop("compare_baselines_note"))
    if "compare_baselines_error" in st.session_state:
        st.error(st.session_state.pop("compare_baselines_error"))


def _single_task_reference(run: dict, runs: list[dict], finals: dict[str, tuple[dict[str, float], str | None]],
                           primary: dict[str, str]) -> dict[str, float]:
    """``{task: primary metric of the run's finished single-task baseline for it}``, on the run's split
    (``finals``: every run's final metrics and their split)."""
    split = finals[run["id"]][1]
    out = {}
    for t, b in single_task_baselines(runs, run["id"]).items():
        values, b_split, _ = finals[b["id"]]
        if b["status"] == RunStatus.FINISHED and t in primary and b_split == split and f"{t}/{primary[t]}" in values:
            out[t] = values[f"{t}/{primary[t]}"]
    return out


@st.cache_data(show_spinner=False, max_entries=16)
def _ensemble_rows(root: str, members: tuple[tuple[str, float, float], ...], class_fusion: str, box_fusion: str,
                   limit: int) -> list[dict]:
    """Every member and the ensemble scored on the same validation images; cached per
    (members, their update times, weights, fusion, images)."""
    ensemble = Ensemble.from_runs(manager().store, [m[0] for m in members], [m[1] for m in members],
                                  class_fusion=class_fusion, box_fusion=box_fusion)
    return evaluate_members_and_ensemble(ensemble, split="val", limit=limit)


def _ensemble_block(store: Any, compared: list[dict], scores: Scores) -> None:
    """Fuse the compared runs' outputs and score the ensemble beside its members."""
    usable = [r for r in compared if r["status"] == RunStatus.FINISHED and model_checkpoint(store, r) is not None]
    groups: dict[tuple[str, ...], list[dict]] = {}
    for r in usable:
        groups.setdefault(tuple(sorted(_tasks(r))), []).append(r)
    members = max(groups.values(), key=len, default=[])
    if len(members) < 2:
        st.info("An ensemble needs two or more finished runs trained on the same tasks: pick them in the table above.")
        return
    tasks = _tasks(members[0])
    left_out = [r for r in compared if r not in members]
    st.caption(f"Fuses the outputs of {len(members)} runs ({', '.join(tasks)}): probabilities averaged per image and "
               "per pixel (Lakshminarayanan et al., 2017) or a weighted vote, depth maps averaged, boxes merged by "
               "weighted boxes fusion (Solovyev et al., 2021) or NMS. Every model is scored on the same validation images.")
    if left_out:
        st.caption("Left out (other tasks, not finished, or no checkpoint): " + ", ".join(_label(r) for r in left_out))
    cols = st.columns(min(4, len(members)))
    weights = [cols[i % len(cols)].number_input(f"Weight of {_label(r)}", 0.0, 100.0, 1.0, 0.5, key=f"compare_ens_w_{r['id']}")
               for i, r in enumerate(members)]
    c1, c2, c3 = st.columns(3)
    class_fusion = c1.radio("Classes", CLASS_FUSIONS, format_func=CLASS_FUSION_LABELS.get, key="compare_ens_class")
    box_fusion = (c2.radio("Boxes", BOX_FUSIONS, format_func=BOX_FUSION_LABELS.get, key="compare_ens_boxes")
                  if any(scores.meta[t].fusion == "boxes" for t in tasks if t in scores.meta) else BOX_FUSIONS[0])
    limit = int(c3.number_input("Validation images", 8, 5000, 256, 8, key="compare_ens_limit",
                                help="The first this many validation images; more is slower and more precise."))
    settings = (runs_dir(), tuple((r["id"], float(w), float(r["updated"])) for r, w in zip(members, weights, strict=True)),
                class_fusion, box_fusion, limit)
    locked = why_not("ensemble.evaluate")  # shared mode, a viewer: minutes of the shared server's CPU
    if st.button("Evaluate the ensemble", key="compare_ens_go", icon=":material/join_inner:", type="primary",
                 disabled=bool(locked), help=locked) and not refused("ensemble.evaluate"):
        st.session_state["compare_ens_settings"] = settings
    if st.session_state.get("compare_ens_settings") != settings:
        if "compare_ens_settings" in st.session_state:
            st.caption("The settings changed since the last evaluation: evaluate again to see their table.")
        return
    try:
        with st.spinner(f"Evaluating {len(members)} runs and their ensemble on {limit} validation images ..."):
            rows = _ensemble_rows(*settings)
    except MTLError as e:
        st.error(f"Could not build the ensemble: {e}")
        return
    names = {r["id"]: _label(r) for r in members}
    table = pd.DataFrame([{**row, "model": names.get(row["model"], row["model"])} for row in rows])
    table = table.rename(columns={k: scores.column(*k.split("/", 1)) for k in table.columns if "/" in k})
    st.dataframe(table, hide_index=True, key="compare_ensemble_table",
                 column_config={"weight": st.column_config.NumberColumn(format="percent"),
                                **{c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if "·" in c}})
    notes = []
    for t in tasks:
        col = scores.column(t, scores.primary[t]) if t in scores.primary else None
        if col in table.columns:
            member_values = table[col].iloc[:-1]
            best = member_values.max() if scores.hib.get(t, True) else member_values.min()
            notes.append(f"{scores.meta[t].label} {scores.primary[t]}: ensemble {table[col].iloc[-1]:.4f}, "
                         f"best member {best:.4f}")
    if notes:
        st.caption(" · ".join(notes))


st.title("Compare runs")
store = manager().store
found = find(store, FILTERS, limit=st.session_state.get("compare_rows", TABLE_ROWS[0]), config=True)
if not found.rows and not filtering(FILTERS):
    st.info("No runs yet. Start some on **Setup** (or `python -m mtl_core train`), then compare them here.")
    st.stop()
*places, rows_at = st.columns([3, 2, 3, 1], vertical_alignment="bottom")
filter_widgets(places, FILTERS, found)
rows_at.selectbox("Rows", TABLE_ROWS, key="compare_rows", format_func="{:,}".format,
                  help="The newest runs that pass the filters, at most this many (their final metrics are read).")
runs = grouped(found.rows)  # by study, then status, newest first
scores = Scores.of(runs)
meta, primary, hib = scores.meta, scores.primary, scores.hib
use = st.selectbox("Model of each run", list(USE_LABELS), format_func=USE_LABELS.get, key="compare_use",
                   help="Which model's test metrics the tables show: the one each run's config names (best on "
                        "validation unless set otherwise), the best-on-validation model, the last step's, or the "
                        "mean of the last evaluations (Nash-MTL's protocol; only runs that scored them have it).")
finals = {r["id"]: _final(runs_dir(), r["id"], r["updated"], _select_of(r), use) for r in runs}

# -- the table of runs -------------------------------------------------------------------------
table = pd.DataFrame([{
    "name": r["name"],
    "study": " · ".join(x for x in (r["study_name"], r["level"]) if x),
    "tasks": ", ".join(r["config"].get("tasks", [])),
    "method": r["config"].get("weighting", {}).get("method", ""),
    "architecture": r["config"].get("model", {}).get("architecture", ""),
    "status": r["status"],
    "steps": f"{r['step']}/{r['total_steps']}",
    "duration": format_duration(run_duration(r)),
    **{scores.column(t, m): finals[r["id"]][0].get(f"{t}/{m}") for t, m in primary.items()},
    "tags": ", ".join(r["labels"]),
    "note": r["note"],
    "id": r["id"],
} for r in runs], columns=["name", "study", "tasks", "method", "architecture", "status", "steps", "duration",
                           *(scores.column(t, m) for t, m in primary.items()), "tags", "note", "id"])
ids_key = hashlib.sha1(",".join(r["id"] for r in runs).encode()).hexdigest()[:10]
st.caption("Pick rows to compare (the boxes at the left); with none picked, the latest finished runs shown are "
           "compared. Metrics are the test split's (of the model picked above) when present, else the last validation."
           + (f" {shown}" if (shown := shown_caption(found, "narrow them with the search and filters")) else "")
           + ("" if runs else " No run matches the filters."))
event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="multi-row",
                     key=f"compare_table_{ids_key}_{st.session_state.get('compare_deleted', 0)}",
                     column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns if "·" in c})
picked = [runs[i]["id"] for i in (event.selection.rows if event is not None else [])]
if not picked:
    picked = [r["id"] for r in found.rows if r["status"] == RunStatus.FINISHED][:DEFAULT_COMPARED]  # the newest
by_id = {r["id"]: r for r in runs}
compared = [by_id[i] for i in picked]
# the compared runs' single-task baselines, wherever the filters and the table's bound leave them
multi = [r["id"] for r in compared if _is_multi_task(r)]
for b in store.find_runs(baseline_of=multi, limit=BASELINES, config=True, counts=False).rows if multi else []:
    if b["id"] not in by_id:
        runs.append(b)
        finals[b["id"]] = _final(runs_dir(), b["id"], b["updated"], _select_of(b), use)

if not compared:
    st.info("No finished run yet: pick runs in the table to compare them.")
else:
    # -- final metrics and Δm against a baseline -------------------------------------------------
    st.subheader("Final metrics and Δm")
    labels = {r["id"]: _label(r) for r in compared}
    oldest = min(compared, key=lambda r: r["created"])["id"]
    base_id = st.selectbox("Baseline run", [r["id"] for r in compared], index=[r["id"] for r in compared].index(oldest),
                           format_func=labels.get, key="compare_baseline",
                           help="Δm = mean over the tasks both runs share of ±(M − M_base)/M_base × 100, "
                                "+ where higher is better (Maninis et al., 2019). Positive = better than the baseline.")
    base_primary = primary_values(finals[base_id][0], primary)
    rows = []
    for r in compared:
        values, split, how = finals[r["id"]]
        tasks_r = r["config"].get("tasks", [])
        mine = primary_values(values, {t: primary[t] for t in tasks_r if t in primary})
        dm = delta_m(mine, base_primary, hib)
        preset = _preset_of(r)
        row = {"run": labels[r["id"]], "status": r["status"], "split": split or "–", "model": how,
               "Δm vs baseline (%)": dm,
               "Δm vs published single-task (%)": published_delta_m(values, preset) if preset else None,
               "Δm vs single-task (%)": delta_m_vs_single_task(tasks_r, mine,
                                                               _single_task_reference(r, runs, finals, primary), hib)
               if _is_multi_task(r) else None}
        for t in tasks_r:
            for k in sorted(values, key=lambda k: (k != f"{t}/{primary.get(t)}", k)):
                if k.startswith(f"{t}/"):
                    row[scores.column(t, k.split("/", 1)[1])] = values[k]
        row["method"] = r["config"].get("weighting", {}).get("method", "")
        row["id"] = r["id"]
        rows.append(row)
    final_df = pd.DataFrame(rows + _published_rows(compared, scores))
    for col in ("Δm vs single-task (%)", "Δm vs published single-task (%)"):
        if final_df[col].isna().all():
            final_df = final_df.drop(columns=col)  # no run has finished baselines, or follows a preset: no empty column
    st.dataframe(final_df, hide_index=True, key="compare_final",
                 column_config={"Δm vs baseline (%)": st.column_config.NumberColumn(format="%+.2f"),
                                "Δm vs published single-task (%)": st.column_config.NumberColumn(
                                    format="%+.2f", help="Δm against the single-task numbers the run's protocol "
                                    "preset publishes, computed as that source does (the preset names it)."),
                                "Δm vs single-task (%)": st.column_config.NumberColumn(
                                    format="%+.2f", help="Δm against the run's own single-task baselines, each task "
                                    "against the run that learnt it alone (same split; Maninis et al., 2019)."),
                                **{c: st.column_config.NumberColumn(format="%.4f") for c in final_df.columns if "·" in c}})
    st.download_button("Download this table as CSV", final_df.to_csv(index=False).encode(), "mtl_compare.csv",
                       "text/csv", icon=":material/download:", key="compare_csv")
    _baselines_block(compared, runs)

    # -- curves overlaid per task -----------------------------------------------------------------
    st.subheader("Curves")
    c1, c2 = st.columns([3, 1])
    smoothing = c1.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare_smoothing")
    log_y = c2.toggle("Log-scale losses", key="compare_log_y")
    run_colors = colors(list(labels.values()))
    tasks_here = list(dict.fromkeys(t for r in compared for t in r["config"].get("tasks", [])))
    for t in tasks_here:
        having = [r for r in compared if t in r["config"].get("tasks", [])]
        loss = {labels[r["id"]]: _series(runs_dir(), r["id"], r["updated"], "train", f"loss/{t}") for r in having}
        left, right = st.columns(2)
        left.plotly_chart(compare_figure(loss, f"{meta[t].label}: training loss", smoothing, log_y, run_colors, "loss"),
                          key=f"compare_loss_{t}", width="stretch")
        if t in primary:
            key = f"{t}/{primary[t]}"
            val = {labels[r["id"]]: _series(runs_dir(), r["id"], r["updated"], "val", key) for r in having}
            arrow = "↑" if hib[t] else "↓"
            right.plotly_chart(compare_figure(val, f"{meta[t].label}: validation {primary[t]} {arrow}", 0.0, False,
                                              run_colors, primary[t]), key=f"compare_val_{t}", width="stretch")

    # -- two tasks' trade-off ---------------------------------------------------------------------
    st.subheader("Trade-off between two tasks")
    scatter_tasks = [t for t in tasks_here if t in primary]
    if len(scatter_tasks) < 2:
        st.info("The compared runs share fewer than two tasks with a primary metric.")
    else:
        c1, c2 = st.columns(2)
        tx = c1.selectbox("x axis", scatter_tasks, index=0, key="compare_x", format_func=lambda t: meta[t].label)
        ty = c2.selectbox("y axis", scatter_tasks, index=1, key="compare_y", format_func=lambda t: meta[t].label)
        pts = [(labels[r["id"]], primary_values(finals[r["id"]][0], primary)) for r in compared]
        pts = [(n, v[tx], v[ty]) for n, v in pts if tx in v and ty in v]
        if len(pts) < 1:
            st.info(f"No compared run has final metrics for both {tx} and {ty}.")
        else:
            names, xs, ys = zip(*pts, strict=False)
            st.plotly_chart(pareto_figure(list(names), xs, ys, f"{meta[tx].label} {primary[tx]}",
                                          f"{meta[ty].label} {primary[ty]}", hib[tx], hib[ty], highlight=labels[base_id]),
                            key="compare_pareto", width="stretch")
            st.caption("Red diamonds: runs no other run beats on both tasks (the Pareto front); the ringed point is the baseline.")

    # -- output-level fusion --------------------------------------------------------------------
    with st.expander("Ensemble of the selected runs", icon=":material/join_inner:"):
        _ensemble_block(store, compared, scores)

# -- deleting runs ----------------------------------------------------------------------------------
with st.expander("Delete runs"):
    delete_runs(store, [r for r in runs if r["id"] in by_id], {r["id"]: _label(r) for r in runs})
