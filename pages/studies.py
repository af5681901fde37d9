"""Studies: many runs as one experiment. A study's progress over its runs and its controls; each
level's curves as the mean over seeds with a band, live while it trains; the final table (each
task's primary test metric and Δm as mean ± 95% CI over seeds, the cost, a ranking that says
which levels cannot be told apart) under a one-sentence verdict; the trade-off between two tasks
with the Pareto front; parallel coordinates of factors against metrics; downloads; and every run
of the study one click from its Live page.

Two ``st.fragment``s poll the run store while a run of the study is active: the progress over
runs every second, the banded curves every few seconds (each chart redraws in place,
``ui/study_curves.py``, ``ui/live_plot.py``). When a run starts, ends or is replaced, the page reruns once: the table,
the trade-off and the controls are drawn from what the store holds then.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.protocols.benchmarks import load_preset, published_delta_m
from mtl_core.store.status import RunStatus
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.store import StudyStore, plan_counts, trials_asked
from mtl_core.studies.summary import Level, pareto_levels, summarize, table, to_json
from mtl_core.tasks import task_meta
from ui.entry import through_app
from ui.roles import refused, view_only_caption, why_not
from ui.state import manager, open_run
from ui.studies import (
    baseline_levels,
    csv_table,
    drawn_with,
    progress_text,
    shown_table,
    study_alive,
    study_state,
)
from ui.study_charts import factor_title, level_colors, parcoords_figure, short_label, tradeoff_figure
from ui.study_curves import curves_panel

through_app()  # a link opened first on a fresh server: rerun through app.py

ss = st.session_state
PROGRESS_SECONDS = 1.0
CHART_SECONDS = 3.0  # as the Live page: every chart each second would cost the browser a core
RUN_ICONS = {RunStatus.QUEUED: ":material/schedule:", RunStatus.RUNNING: ":material/play_circle:",
             RunStatus.PAUSED: ":material/pause_circle:", RunStatus.FINISHED: ":material/check_circle:",
             RunStatus.FAILED: ":material/error:", RunStatus.STOPPED: ":material/stop_circle:",
             RunStatus.INTERRUPTED: ":material/warning:"}
STATE_BADGE = {"training": "blue", "paused": "orange", "finished": "green", "stopped": "violet",
               "interrupted": "orange", "ended with failures": "red", "planned": "gray"}
HONEST = ("Metrics are each run's final model, scored once on the test split after training: nothing is chosen on "
          "test (runs are trained and monitored on validation).")


# ------------------------------------------------------------------ what the store holds
def _selected() -> str | None:
    return st.query_params.get("study") or ss.get("study_id") or None


def _select(study_id: str) -> None:
    ss["study_id"] = study_id
    st.query_params["study"] = study_id


def _picked() -> None:
    """The picker's callback. Its value is what the browser shows: a label that has since changed
    (a run finished) comes back as that label, not a study id, and is no choice of a person's."""
    value = ss.get("study_picker")
    if value and StudyStore(manager().store).get(str(value)) is not None:
        _select(value)


# ------------------------------------------------------------------ actions (button callbacks)
def _act(action: str, study_id: str) -> None:
    ss.pop("study_action_error", None)
    if (reason := refused("study.steer", show=False)) is not None:  # the server's check, whatever the browser sent
        ss["study_action_error"] = reason
        return
    runner = StudyRunner(manager())
    try:
        if action == "pause":
            runner.pause(study_id)
        elif action == "resume":
            runner.resume(study_id)
        elif action == "stop":
            runner.stop(study_id)
            ss["study_action_note"] = "Stopping every run of the study; each saves a checkpoint. Carry on resumes them."
        elif action == "carry_on":
            c = runner.carry_on(study_id)
            ss["study_action_note"] = (f"Carrying on: {c['done']} done, {c['resumed']} resumed from a checkpoint, "
                                       f"{c['started']} started, {c['reused']} reused, {c['running']} still training.")
        elif action == "extend":
            seeds = int(ss[f"study_more_seeds_{study_id}"])
            added = runner.extend(study_id, seeds)
            ss["study_action_note"] = f"{added} run{'s' if added != 1 else ''} added: seeds 1 to {seeds} for every level."
    except MTLError as e:
        ss["study_action_error"] = str(e)


def _controls(study: dict, spec: StudySpec | None, state: str, alive: bool) -> None:
    sid = study["id"]
    locked = why_not("study.steer")  # shared mode, a viewer: the buttons show, disabled, saying why
    view_only_caption("pauses, stops, carries on and extends studies")
    c1, c2, c3, c4, c5 = st.columns([1, 1, 1.2, 1.2, 1.4], vertical_alignment="bottom")
    if state == "paused":
        c1.button("Resume", key=f"study_resume_{sid}", on_click=_act, args=("resume", sid), type="primary",
                  icon=":material/play_arrow:", width="stretch", disabled=bool(locked), help=locked)
    else:
        c1.button("Pause", key=f"study_pause_{sid}", on_click=_act, args=("pause", sid), disabled=not alive or bool(locked),
                  icon=":material/pause:", width="stretch", help=locked or "Pauses every run of the study at its next step.")
    c2.button("Stop", key=f"study_stop_{sid}", on_click=_act, args=("stop", sid), disabled=not alive or bool(locked),
              icon=":material/stop:", width="stretch",
              help=locked or "Stops every run of the study; each saves a checkpoint, and Carry on resumes them.")
    c3.button("Carry on", key=f"study_carry_on_{sid}", on_click=_act, args=("carry_on", sid),
              disabled=alive or state == "finished" or bool(locked), icon=":material/replay:", width="stretch",
              help=locked or "For a stopped or interrupted study: resumes each unfinished run from its last checkpoint "
                   "(or starts it anew without one); no finished run is trained again.")
    now = len(spec.seed_list()) if spec is not None else 1
    search = bool(spec is not None and spec.search)
    c4.number_input("Seeds in all", min_value=now + 1, max_value=max(now + 1, 50), value=now + 1, step=1,
                    key=f"study_more_seeds_{sid}", disabled=spec is None or search or bool(locked), help=f"The study has {now} seed{'s' if now != 1 else ''} now; "
                    "more seeds train every level (and baseline) again with the new seeds.")
    c5.button("More seeds", key=f"study_extend_{sid}", on_click=_act, args=("extend", sid),
              disabled=spec is None or search or bool(locked), icon=":material/add:", width="stretch",
              help=locked or ("A search is extended with more trials, not seeds: start a new study." if search else None))
    if "study_action_note" in ss:
        st.toast(ss.pop("study_action_note"), icon=":material/check:")
    if ss.get("study_action_error"):
        st.error(ss["study_action_error"], icon=":material/error:")


# ------------------------------------------------------------------ live parts
def progress_panel(study_id: str, shown: tuple, polling: bool, trials: int) -> None:
    """Every second: the progress bar over runs and what trains now; one full rerun when a run
    starts, ends or is replaced (the table and controls are drawn from what the store holds)."""
    studies = StudyStore(manager().store)
    study = studies.get(study_id)
    if study is None:
        st.warning(f"Study `{study_id}` is gone.")
        return
    plan = studies.plan(study_id)
    counts = plan_counts(plan)
    done = counts.get(RunStatus.FINISHED, 0)
    search = f"search: {trials_asked(plan)} of {trials} trials asked" if trials else ""
    st.progress(done / max(1, counts["total"]), text=progress_text(counts, search))
    training = [row for row in plan if row["run"] is not None and row["run"]["status"] in (RunStatus.RUNNING, RunStatus.PAUSED)]
    if training:
        st.caption("Now: " + " · ".join(
            f"{(row['run'].get('tags') or {}).get('label') or row['run']['name']} seed {row['seed']}: step "
            f"{row['run']['step']:,} / {row['run']['total_steps']:,}" + (" (paused)" if row["run"]["status"] == RunStatus.PAUSED else "")
            for row in training))
    if polling and (drawn_with(study, plan) != shown or not study_alive(plan, study_id=study_id)):
        st.rerun()


# ------------------------------------------------------------------ the final table
TABLE_CONFIG = {
    "Δm (%) ↑": st.column_config.TextColumn(help="Δm against the single-task baselines (Maninis et al., 2019), seed by "
                                            "seed against the same seed's baselines: mean ± 95% CI"),
    "rank": st.column_config.NumberColumn(format="%d", help="1 + the number of levels significantly better"),
    "seconds": st.column_config.NumberColumn("s / run", format="%.1f", help="Training seconds per run, mean over seeds"),
    "parameters": st.column_config.NumberColumn(format="localized"),
}


def _runs_list(summary: Any, baselines: list[Level], runs: dict[str, dict]) -> None:
    """Every run of the study, by level and seed: one click opens it on Live training."""
    groups = [(lv.label, lv.run_ids, lv.seeds) for lv in summary.levels]
    groups += [(lv.label, lv.run_ids, lv.seeds) for lv in baselines]
    for label, run_ids, seeds in groups:
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.markdown(f"**{label}**", width="content")
            for seed in seeds:
                rid = run_ids.get(seed)
                run = runs.get(rid) if rid else None
                if run is None:
                    st.button(f"seed {seed}", key=f"study_open_{label}_{seed}", disabled=True, type="tertiary",
                              help="not started yet")
                    continue
                if st.button(f"seed {seed}", key=f"study_open_{rid}", type="tertiary", icon=RUN_ICONS.get(run["status"]),
                             help=f"{run['name']}: {run['status']}, step {run['step']:,} / {run['total_steps']:,}. "
                                  "Open it on Live training."):
                    open_run(rid)


def published_levels(summary: Any) -> None:
    """The study's protocol preset's published numbers beside each level's primary metrics, and each
    level's Δm against the published single-task numbers over those metrics."""
    try:
        preset = load_preset(summary.benchmark)
    except MTLError as e:
        st.caption(f"Protocol preset {summary.benchmark!r} cannot be read here: {e}")
        return
    keys = {t: f"{t}/{summary.primary.get(t, '')}" for t in summary.tasks}
    rows = []
    for lv in summary.levels:
        ours = {k: lv.metrics[t].mean for t, k in keys.items() if t in lv.metrics}
        rows.append({"": lv.label, **{k: ours.get(k) for k in keys.values()},
                     "Δm vs published single-task (%)": published_delta_m(ours, preset)})
    for r in preset.published:
        theirs = {k: r.metrics[k] for k in keys.values() if k in r.metrics}
        rows.append({"": f"published · {r.label}", **{k: theirs.get(k) for k in keys.values()},
                     "Δm vs published single-task (%)": published_delta_m(theirs, preset)})
    st.markdown(f"**Beside the published numbers** · {preset.title}")
    st.dataframe(rows, hide_index=True, column_config={
        **{k: st.column_config.NumberColumn(format="%.4f") for k in keys.values()},
        "Δm vs published single-task (%)": st.column_config.NumberColumn(format="%+.2f")})
    st.caption("Δm here is over the primary metrics the table shows. "
               + " ".join(f"{r.label}: {r.citation}." for r in preset.published)
               + (f" Not published here: {preset.missing}" if preset.missing else ""))


# ------------------------------------------------------------------ page
st.title("Studies")
studies = StudyStore(manager().store)
listed = studies.list()  # newest first
if not listed:
    st.info("No studies yet. A study trains many runs as one experiment (factors x seeds, with the single-task "
            "baselines) and reads them back with error bars. Start one from **Setup** (its **Start as a study** "
            "section), or from a shell: `python -m mtl_core study run SPEC.json`.")
    st.stop()

plans = {s["id"]: studies.plan(s["id"]) for s in listed}
labels_of = {}
for s in listed:
    c = plan_counts(plans[s["id"]])
    when = datetime.fromtimestamp(s["created"]).strftime("%b %d %H:%M") if s.get("created") else ""
    labels_of[s["id"]] = (f"{s['name']} · {study_state(s, c, study_alive(plans[s['id']], check=False), plans[s['id']])} · "
                          f"{c.get(RunStatus.FINISHED, 0)} of {c['total']} runs finished" + (f" · {when}" if when else ""))
current = _selected()
if current in labels_of:
    ss["study_picker"] = current
elif ss.get("study_picker") not in labels_of:
    ss["study_picker"] = listed[0]["id"]
study_id = st.sidebar.selectbox("Study", list(labels_of), key="study_picker", format_func=labels_of.__getitem__,
                                on_change=_picked, help="Studies newest first.")
if current and current not in labels_of:
    st.warning(f"There is no study `{current}` in this runs directory; showing the newest one.")

study = studies.get(study_id)
plan = plans[study_id]
try:
    spec: StudySpec | None = StudySpec.from_dict(study["spec"])
except MTLError as e:
    spec = None
    st.error(f"This study's spec no longer loads: {e}")
counts = plan_counts(plan)
alive = study_alive(plan, study_id=study_id)
state = study_state(study, counts, alive, plan)
search = (spec.search if spec is not None else {}) or {}

st.markdown(f"### {study['name']} &nbsp; :{STATE_BADGE.get(state, 'gray')}-badge[{state}]")
seeds_n = len(spec.seed_list()) if spec is not None else 0
factors = list(search.get("space", {}) if search else (spec.factors if spec is not None else {}) or {})
what = (f"a search ({search.get('sampler', 'nsga2')}) of {search.get('trials', '?')} trials over {', '.join(factors)}"
        if search else ", ".join(f"{k}: {len(v) if isinstance(v, list) else v.get('n', '?')} levels"
                                 for k, v in (spec.factors if spec is not None else {}).items())
        or "no factors (the base config)")
st.caption(f"`{study_id}` · " + (" · ".join(filter(None, [what, f"{seeds_n} seed{'s' if seeds_n != 1 else ''}",
    "with single-task baselines" if spec.baselines else ""])) if spec is not None else ""))
with st.expander("Spec (JSON)", icon=":material/data_object:"):
    st.code(json.dumps(study["spec"], indent=2), language="json")
_controls(study, spec, state, alive)
st.fragment(progress_panel, run_every=PROGRESS_SECONDS if alive else None)(
    study_id, drawn_with(study, plan), alive, int(search.get("trials", 0) or 0))

USE_LABELS = {"": "the study's rule", "best": "best on validation", "last": "last step",
              "mean_last": "mean of the last evaluations"}
use = st.selectbox("Model of each run", list(USE_LABELS), format_func=USE_LABELS.get, key="study_use",
                   help="Which model of each run the table scores on the test split: the one the study's base "
                        "config names (best on validation unless set otherwise), the best-on-validation model, "
                        "the last step's, or the mean of the last evaluations (Nash-MTL's protocol).")
try:
    summary = summarize(manager().store, study_id, use=use)
except MTLError as e:
    st.error(f"This study cannot be summarised: {e}")
    st.stop()
meta = task_meta(summary.tasks, summary.task_specs)
labels = {lv.label: short_label(lv.level) for lv in summary.levels}
colors = level_colors([lv.label for lv in summary.levels])
baselines = baseline_levels(spec, plan) if spec is not None else []
runs = {row["run_id"]: row["run"] for row in plan if row["run"] is not None}

# -- the verdict and the final table ------------------------------------------------------------
st.subheader("Result")
sentence = summary.sentence[:1].upper() + summary.sentence[1:]
if summary.ranking:
    st.success(sentence, icon=":material/insights:")
else:
    st.info(sentence)
done = counts.get(RunStatus.FINISHED, 0)
st.caption((f"Ranked on {summary.ranked_on}. " if summary.ranked_on else "")
           + "Each task's primary metric and Δm are the mean ± 95% CI over the finished seeds (Student's t; Δm paired "
             "by seed against the same seed's baselines); a rank is 1 + the levels significantly better, and levels "
             f"that cannot be told apart at this number of seeds are named. {HONEST}"
           + ("" if done == counts["total"] else f" So far {done} of {counts['total']} runs have finished."))
rows = table(summary)
df = csv_table(summary, rows, seeds_n)
shown = shown_table(summary, rows, meta, factors, seeds_n)
event = st.dataframe(shown, hide_index=True, column_config=TABLE_CONFIG, key=f"study_table_{study_id}",
                     on_select="rerun", selection_mode="single-row", placeholder="–")
st.caption("Each cell: the mean over the finished seeds ± the half-width of its 95% CI, on the test split, "
           f"of each run's model {summary.selection}.")
if summary.benchmark:
    published_levels(summary)
picked = event.selection.rows if event is not None else []
if picked and picked[0] < len(summary.levels):
    lv = summary.levels[picked[0]]
    ids = [(s, lv.run_ids[s]) for s in lv.seeds if s in lv.run_ids]
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"Open a run of **{lv.label}** on Live training:", width="content")
        for seed, rid in ids:
            if st.button(f"seed {seed}", key=f"study_pick_{rid}", icon=RUN_ICONS.get(runs[rid]["status"]) if rid in runs else None):
                open_run(rid)
else:
    st.caption("Pick a row to open its runs, or use the list of runs below.")
downloads = st.container(horizontal=True)
d1 = d2 = d3 = downloads
stem = "".join(ch if ch.isalnum() else "_" for ch in study["name"])[:60] or study_id
d1.download_button("Table (CSV)", df.to_csv(index=False).encode(), f"{stem}.csv", "text/csv",
                   key=f"study_csv_{study_id}", icon=":material/download:", on_click="ignore")
d2.download_button("Summary (JSON)", to_json(summary), f"{stem}_summary.json", "application/json",
                   key=f"study_summary_{study_id}", icon=":material/download:", on_click="ignore")
d3.download_button("Spec (JSON)", json.dumps(study["spec"], indent=2), f"{stem}_spec.json", "application/json",
                   key=f"study_spec_{study_id}", icon=":material/download:", on_click="ignore",
                   help="The file `python -m mtl_core study run` takes: the same study again, or a start for a new one.")

# -- banded curves, live ------------------------------------------------------------------------
st.subheader("Curves")
st.caption("Each level's mean over its seeds; band: ± 1 std over seeds, on the steps every seed of the level has "
           "reached (dotted beyond them: the seeds that are further on). Validation metrics as training monitors "
           "them; single-task baselines grey and dashed.")
with st.sidebar:
    smoothing = st.slider("Smoothing (training loss)", 0.0, 0.99, 0.6, 0.01, key="study_smoothing",
                          help="Exponential moving average of the mean and the band of the per-step training loss.")
st.fragment(curves_panel, run_every=CHART_SECONDS if alive else None)(
    study_id, summary.levels, baselines, summary.tasks, meta, labels, colors, factor_title(factors), smoothing)

# -- trade-off and Pareto front -----------------------------------------------------------------
st.subheader("Trade-off between tasks")
scored = [t for t in summary.tasks if meta[t]["primary"]]
titles = {t: meta[t]["title"] for t in summary.tasks}
if len(scored) < 2:
    st.info("The study trains one task: there is no trade-off between tasks to draw.")
elif not any(lv.metrics for lv in summary.levels):
    st.info("The trade-off appears once a level has a finished run.")
else:
    tx, ty = scored[0], scored[1]
    if len(scored) > 2:
        a, b = st.columns(2)
        tx = a.selectbox("x axis", scored, index=0, key=f"study_x_{study_id}", format_func=titles.get)
        ty = b.selectbox("y axis", scored, index=1, key=f"study_y_{study_id}", format_func=titles.get)
    if tx == ty:
        st.info("Pick two different tasks.")
    else:
        on = pareto_levels(summary, [tx, ty])
        st.plotly_chart(tradeoff_figure(summary, tx, ty, on, labels, colors, titles), key=f"study_tradeoff_{study_id}",
                        width="stretch")
        st.caption("Each level at its mean test metrics, with 95% CI error bars (none with one seed); red diamonds on "
                   "the dashed line: the Pareto front, levels no other level beats on both tasks. Dotted lines: each "
                   "task learnt alone.")
    if len(scored) > 2:
        front = pareto_levels(summary, scored)
        rows = [{"level": lv.label, **{f"{t} {summary.primary[t]}": str(lv.metrics[t]) if t in lv.metrics else "–"
                                       for t in scored}} for lv, f in zip(summary.levels, front, strict=False) if f]
        st.markdown(f"**Pareto front over all {len(scored)} tasks** ({len(rows)} of {len(summary.levels)} levels)")
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"study_front_{study_id}")

# -- parallel coordinates -----------------------------------------------------------------------
st.subheader("Factors against metrics")
fig, left_out = parcoords_figure(summary, titles)
if fig is None:
    st.info("One line per finished run appears here: its factor values and its test metrics.")
else:
    st.plotly_chart(fig, key=f"study_parcoords_{study_id}", width="stretch")
    st.caption("One line per finished run (each seed), coloured by Δm where the baselines are there; drag along an "
               "axis to pick a range and see which factor values go with which metrics."
               + (f" Left out (not every run has them): {', '.join(left_out)}." if left_out else ""))

# -- the runs -----------------------------------------------------------------------------------
st.subheader("Runs")
st.caption("Every run of the study is an ordinary run: click one to watch or inspect it on Live training.")
_runs_list(summary, baselines, runs)
