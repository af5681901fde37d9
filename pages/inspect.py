"""Inspect: where and how a trained run fails, task by task, and run against run.

An error browser over the run's validation or test split (every sample with each task's error,
filtered and sorted, as thumbnails with the errors drawn; a click opens the sample large), the
confusion matrices (a click on a cell lists its samples), per-class precision-recall curves and
reliability diagrams, and one image through two to four runs side by side.

UI only: the per-sample outputs, errors and drawings come from ``mtl_core.inspection`` (no torch
here); the outputs are computed once per checkpoint and kept beside it.
"""
from __future__ import annotations

import hashlib
import html

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.inference.images import decode_image
from mtl_core.inspection import table as tb
from mtl_core.store.status import WITH_CHECKPOINTS
from mtl_core.views import inspection as views
from ui import inspect_view as iv
from ui.access import AccessError
from ui.charts import DRAWN_AT_FIRST, MANY_TASKS
from ui.entry import through_app
from ui.inspect_charts import co_failure_figure, confusion_figure, picked_cell, pr_figure, reliability_figure
from ui.metrics import format_bytes
from ui.roles import upload_limit_mb
from ui.sidebar import model_checkpoint, run_label, run_picker
from ui.state import manager

through_app()  # a link opened first on a fresh server: rerun through app.py

ss = st.session_state
VIEWS = {"browse": "Error browser", "sample": "Sample", "confusion": "Confusion matrices", "curves": "Per-class curves",
         "compare": "Run against run"}
PER_PAGE = 18
CELL_SAMPLES = 12
MAX_RUNS = 4
CANDIDATES = 200  # runs offered to compare against: the newest with checkpoints (and those picked)
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]


def _open(j: int) -> None:
    ss["inspect_sample"] = j
    ss["inspect_view"] = "sample"


def _step(delta: int, order: list[int]) -> None:
    j = ss.get("inspect_sample", 0)
    if j in order:
        ss["inspect_sample"] = order[min(max(0, order.index(j) + delta), len(order) - 1)]


st.title("Inspect")
store = manager().store
run_id = run_picker("inspect", statuses=WITH_CHECKPOINTS)
run = store.get_run(run_id) if run_id else None
if run is None:
    st.info("No trained run yet. Train one on **Setup** (or `python -m mtl_core train`); its errors can be inspected "
            "here once it has a checkpoint.")
    st.stop()
ck = model_checkpoint(store, run)
if ck is None:
    st.info(f"Run **{html.escape(run['name'])}** has no checkpoint yet; the first one is written at step "
            f"{run['config'].get('checkpoint_every', '?')}.")
    st.stop()

c1, c2, c3 = st.columns([1.3, 2, 4])
split = c1.selectbox("Split", ["val", "test"], key="inspect_split", format_func={"val": "validation", "test": "test"}.get,
                     help="Choose models on validation; score the one chosen on test.")
threshold = c2.slider("Score threshold", 0.05, 0.95, 0.3, 0.05, key="inspect_threshold",
                      help="Boxes scoring below this are left out: they are neither hits nor false positives.")
split_name = {"val": "validation", "test": "test"}[split]
try:
    path, mtime = iv.checkpoint_key(ck)
    # a viewer of a shared dashboard reads what is kept; computing it is the owner's leave, within a cap
    out = iv.session_outputs(path, mtime, split, f"The {split_name} outputs of {html.escape(run['name'])}")
except AccessError as e:
    st.info(str(e), icon=":material/lock:")
    st.stop()
except (MTLError, OSError) as e:
    st.error(f"This run's {split} split cannot be inspected here: {e}")
    st.stop()
tasks = out.tasks
titles = {t: task.title or t for t, task in tasks.items()}
if len(tasks) <= MANY_TASKS:
    picked = c3.pills("Show", list(tasks), selection_mode="multi", default=list(tasks), key="inspect_show",
                      format_func=titles.get) or []
else:  # forty attributes' verdicts under every thumbnail bury the pictures: a few, chosen per task
    picked = c3.multiselect(f"Show ({len(tasks)} tasks)", list(tasks), default=list(tasks)[:DRAWN_AT_FIRST], key="inspect_show_many",
                            format_func=titles.get, help="Every task's errors stay in the table, the filters and the CSV")
show = {t: t in picked for t in tasks}
kept = iv.kept_file(path, split)
st.caption(f"**{html.escape(run['name'])}** ({run['status']}), checkpoint: {ck['chosen']} · "
           f"{len(out)} {split} samples · tasks: {', '.join(titles.values())}"
           + (f" · outputs kept beside the checkpoint ({format_bytes(kept[1])}, deleted with the run)" if kept else ""))
table = tb.error_table(out, threshold)
ss.setdefault("inspect_view", "browse")
view = st.segmented_control("View", list(VIEWS), key="inspect_view", format_func=VIEWS.get) or "browse"

# -- the error browser -------------------------------------------------------------------------
if view == "browse":
    with st.expander("Filter and sort", expanded=False):
        conditions = iv.filters(tasks)
        c1, c2, c3 = st.columns([1, 2, 1])
        least = c1.number_input("Tasks failed at least", 0, len(tasks), 0, key="inspect_f_tasks_failed",
                                help="How one image's tasks fail together: 2 or more lists the samples where "
                                     "several tasks went wrong at once.")
        if least:
            conditions.append(tb.Condition("tasks_failed", ">=", int(least)))
        meta = tb.columns(tasks)
        sortable = ["tasks_failed"] + [k for k, (_, c) in meta.items() if c.kind != tb.TEXT and c.worse]
        names = {"tasks_failed": "tasks failed", **{k: f"{titles[t]}: {c.title}" for k, (t, c) in meta.items()}}
        by = c2.selectbox("Sort by", sortable, key="inspect_sort", format_func=names.get)
        worst = c3.toggle("Worst first", value=True, key="inspect_worst")
    rows = tb.filter_rows(table, conditions)
    worse = "high" if by == "tasks_failed" else meta[by][1].worse
    order = tb.sort_rows(table, rows, by, worst, worse)
    ss["inspect_order"] = order
    flags = {k for k, (_, c) in meta.items() if c.kind == tb.FLAG}
    said = " and ".join(names[c.column] if c.column in flags else c.words(names) for c in conditions)
    st.markdown(f"**{len(order)}** of {len(out)} samples" + (f" with {html.escape(said)}" if said else "")
                + f" · sorted by {html.escape(names[by])}, {'worst' if worst else 'best'} first")
    pages = max(1, -(-len(order) // PER_PAGE))
    c1, c2, c3 = st.columns([1, 1, 3])
    page = c1.number_input(f"Page (of {pages})", 1, pages, 1, key="inspect_page") if pages > 1 else 1
    c2.download_button("Errors as CSV", tb.to_csv({k: [v[j] for j in order] for k, v in table.items()}),
                       f"{run['name']}_{split}_errors.csv", "text/csv", key="inspect_csv", on_click="ignore",
                       icon=":material/download:")
    iv.grid(ck, split, out, table, order[(page - 1) * PER_PAGE:page * PER_PAGE], show, threshold, _open, "inspect_grid")
    if not order:
        st.info("No sample passes every filter; loosen one.")
    with st.expander("How tasks fail together"):
        st.plotly_chart(co_failure_figure(tb.co_failure(list(tasks), table), titles), key="inspect_cofail",
                        width="stretch")
        st.caption("Each row: of the samples where that task failed, the share where each other task failed too. A "
                   "row well above the column's own rate (the diagonal) means the two tasks fail on the same images.")

# -- one sample large --------------------------------------------------------------------------
elif view == "sample":
    order = ss.get("inspect_order") or list(range(len(out)))
    by_index = {idx: j for j, idx in enumerate(out.indices)}
    j = ss.get("inspect_sample", order[0] if order else 0)
    c1, c2, c3, c4 = st.columns([2, 1.4, 1.4, 4])
    index = c1.number_input("Sample", 0, max(out.indices), out.indices[j], key=f"inspect_index_{j}",
                            help="The sample's index in the split.")
    if int(index) in by_index and by_index[int(index)] != j:
        ss["inspect_sample"] = j = by_index[int(index)]
        st.rerun()
    c2.button("Previous", key="inspect_prev", on_click=_step, args=(-1, order), icon=":material/chevron_left:",
              disabled=j not in order or order.index(j) == 0)
    c3.button("Next", key="inspect_next", on_click=_step, args=(1, order), icon=":material/chevron_right:",
              disabled=j not in order or order.index(j) == len(order) - 1)
    if j in order:
        c4.caption(f"{order.index(j) + 1} of the {len(order)} samples the error browser lists")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="inspect_opacity")
    iv.show_view(tasks, views.sample_view(out, j, show, threshold, opacity), "inspect_large")

# -- confusion matrices ------------------------------------------------------------------------
elif view == "confusion":
    matrices = {t: m for t in tasks if show[t] and (m := out.confusions(t, threshold))}
    if not matrices:
        st.info("None of the shown tasks has classes to confuse.")
        st.stop()
    c1, c2, c3 = st.columns([2, 2, 1])
    t = c1.selectbox("Task", list(matrices), key="inspect_cm_task", format_func=titles.get)
    options = matrices[t]
    which = c2.selectbox("Class", range(len(options)), key="inspect_cm_which",
                         format_func=lambda i: options[i].title.split(": ")[-1]) if len(options) > 1 else 0
    by_row = c3.toggle("Share of each row", value=False, key="inspect_cm_norm",
                       help="Each row divided by its total: the diagonal then reads as recall.")
    m = options[which or 0]
    cell_key = f"inspect_cm_cell_{t}_{which}"
    # the figure must not change with the cell picked: a new figure is a new widget, and its click is lost
    event = st.plotly_chart(confusion_figure(m, by_row), key=f"inspect_cm_chart_{t}_{which}",
                            on_select="rerun", selection_mode="points", width="stretch")
    clicked = picked_cell(event)
    if clicked is not None and clicked != ss.get(f"{cell_key}_clicked"):
        ss[f"{cell_key}_clicked"] = clicked  # a new click: it picks the cell
        ss[f"{cell_key}_r"], ss[f"{cell_key}_c"] = clicked
    c1, c2 = st.columns(2)
    r = c1.selectbox("Truth", range(len(m.rows)), key=f"{cell_key}_r", format_func=lambda i: m.rows[i])
    c = c2.selectbox("Prediction", range(len(m.cols)), key=f"{cell_key}_c", format_func=lambda i: m.cols[i])
    samples = m.samples.get((r, c), [])
    where = f"with truth *{html.escape(m.rows[r])}* and prediction *{html.escape(m.cols[c])}*"
    if m.unit == "samples":
        st.markdown(f"**{m.counts[r][c]:,} samples** {where}" + (", the most confident first" if samples else ""))
    else:
        st.markdown(f"**{m.counts[r][c]:,} {m.unit}** {where}, in {len(samples)} samples"
                    + (f", those with the most {m.unit} first" if samples else ""))
    iv.grid(ck, split, out, table, samples[:CELL_SAMPLES], show, threshold, _open, "inspect_cell")

# -- per-class curves --------------------------------------------------------------------------
elif view == "curves":
    drawn = 0
    for t in tasks:
        curves = out.curves(t, threshold) if show[t] else []
        pr = [c for c in curves if c.kind == "pr"]
        if pr:
            st.plotly_chart(pr_figure(pr, f"{titles[t]}: precision against recall per class"), key=f"inspect_pr_{t}",
                            width="stretch")
            drawn += 1
        for c in (c for c in curves if c.kind == "reliability"):
            st.plotly_chart(reliability_figure(c), key=f"inspect_rel_{t}", width="stretch")
            st.caption("A calibrated model's bars follow the diagonal: of the answers given with 80% confidence, 80% "
                       "are right. Bars below it: overconfident (Guo et al., ICML 2017).")
            drawn += 1
    if not drawn:
        st.info("None of the shown tasks has per-class curves (detection and multi-label have precision-recall "
                "curves; classification and count a reliability diagram).")

# -- run against run ---------------------------------------------------------------------------
else:
    rows = store.find_runs(statuses=WITH_CHECKPOINTS, limit=CANDIDATES, config=True, counts=False).rows
    kept = [i for i in ss.get("inspect_runs") or [run["id"]] if i not in {r["id"] for r in rows}]
    if kept:  # this run and those picked before, when older than the newest CANDIDATES
        rows += store.find_runs(statuses=WITH_CHECKPOINTS, ids=kept, config=True, counts=False).rows
    usable = [r for r in rows if model_checkpoint(store, r)]
    by_id = {r["id"]: r for r in usable}
    if "inspect_runs" not in ss:  # this run and the others trained on the same data, newest first
        same = [r["id"] for r in usable if r["id"] != run["id"] and r["config"].get("data") == run["config"].get("data")]
        ss["inspect_runs"] = [run["id"], *same][:2]
    ss["inspect_runs"] = [i for i in ss["inspect_runs"] if i in by_id]
    picks = st.multiselect("Runs", list(by_id), key="inspect_runs", max_selections=MAX_RUNS,
                           format_func=lambda i: f"{run_label(by_id[i])} · {', '.join(by_id[i]['config'].get('tasks', []))}",
                           help="Two to four runs: EW against PCGrad, or a multi-task run against its single-task "
                                "baselines. Each is drawn with the tasks it has.")
    c1, c2 = st.columns([1, 3])
    source = c1.radio("Image", ["sample", "upload"], key="inspect_cmp_source", horizontal=True,
                      format_func={"sample": f"a {split} sample", "upload": "an upload"}.get)
    image, truth, title = None, None, ""
    if source == "sample":
        idx = c2.number_input("Sample", 0, max(out.indices), out.indices[ss.get("inspect_sample", 0)],
                              key="inspect_cmp_index")
        j = out.indices.index(int(idx)) if int(idx) in out.indices else 0
        image, truth, title = out.image(j), out.truth(j), f"{split} sample {out.indices[j]}"
    else:
        limit = upload_limit_mb()  # shared mode: the same limit as Predict's
        up = c2.file_uploader("Image", type=IMAGE_TYPES, key="inspect_cmp_upload", max_upload_size=limit,
                              help="Without ground truth: each run's predictions, no errors."
                              + (f" Shared dashboard: up to {limit} MB; only you see it." if limit else ""))
        if up is not None:
            try:
                image, title = decode_image(up.getvalue(), up.name), up.name
            except MTLError as e:
                st.error(str(e))
    if len(picks) < 2:
        st.info("Pick two to four runs to compare them on one image.")
    elif image is not None:
        st.caption(f"{html.escape(title)} · "
                   + ("errors against its ground truth" if truth else "predictions only (no ground truth)"))
        for col, rid in zip(st.columns(len(picks)), picks, strict=True):
            with col:
                st.markdown(f"**{html.escape(by_id[rid]['name'])}**  \n"
                            f"{html.escape(', '.join(by_id[rid]['config'].get('tasks', [])))}")
                try:
                    p = iv.predictor(*iv.checkpoint_key(model_checkpoint(store, by_id[rid])))
                    drawn = views.run_view(p, image, truth, show, threshold)
                except (MTLError, OSError) as e:
                    st.error(f"{by_id[rid]['name']}: {e}")
                    continue
                iv.show_view(p.tasks, drawn, f"inspect_cmp_{rid}_{hashlib.sha1(title.encode()).hexdigest()[:8]}",
                             max_columns=1)
