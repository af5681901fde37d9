"""Live training: every task's curves, the task weights, progress, the run's controls, and (for a
multi-task run) gradient conflict: pairwise cosines of the tasks' gradients on the shared
parameters and their norms, as the engine records them every ``gradstats_every`` steps.

Below the run picker three ``st.fragment``s poll the run store while the run is active: the
progress bar about once a second, the curves every few seconds (only the rows new since the last
look; each chart redraws in place, see ``ui/live_plot.py``), gradient conflict every ten; so
progress shows without a full-page rerun. A change of status (paused, finished, ...) reruns the
page once: it redraws the header and controls, and stops the polling once the run has ended. A
run started from the command line (``python -m mtl_core train``) or under torchrun into the same
runs directory shows, and is steered, the same way: the controls send commands through the run
store, which its trainer reads at its next step.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.store.status import ACTIVE, RESUMABLE, TERMINAL, RunStatus
from mtl_core.tasks import task_meta
from mtl_core.training.gradstats import cosine_matrix
from mtl_core.weighting import method_meta
from mtl_core.weights import WEIGHT_MAX, WEIGHT_MIN, WEIGHT_STEP, weights_in_force
from ui.charts import DRAWN_AT_FIRST, MANY_TASKS, TaskMeta
from ui.entry import through_app
from ui.live_plot import live_chart
from ui.live_view import cached_conflict, task_rows
from ui.metrics import final_report, format_duration
from ui.published import published_table
from ui.roles import refused, view_only_caption, viewer, why_not
from ui.run_notes import notes_editor, show_notes
from ui.shared import feeds, live_view, run_row
from ui.sidebar import run_picker
from ui.state import manager

through_app()  # a link opened first on a fresh server: rerun through app.py

STATUS_BADGE = {RunStatus.QUEUED: "gray", RunStatus.RUNNING: "blue", RunStatus.PAUSED: "orange",
                RunStatus.FINISHED: "green", RunStatus.FAILED: "red", RunStatus.STOPPED: "violet",
                RunStatus.INTERRUPTED: "orange"}
# charts of a running run redraw every few seconds, the progress bar every second: every chart
# each second cost the browser half a core (when each redraw rebuilt the chart), a third of a
# 2-core machine's training
CHART_SECONDS = 3.0
STATUS_SECONDS = 1.0  # the progress bar
# a viewer of a shared dashboard (a class of 30): every fragment rerun costs the server a few ms
# of Streamlit's own work, whatever it draws, and training on the same machine pays for it
VIEWER_STATUS_SECONDS = 2.0
CONFLICT_SECONDS = 10.0  # about the cadence of gradient statistics (every 50 steps) in the demo
ACTIONS = {"pause": "run.pause", "resume": "run.pause", "stop": "run.stop", "continue": "run.continue"}
WEIGHT_USES = {"weights": "the weights of the weighted sum of the task losses",
               "multiplier": "multipliers on the task losses the method balances",
               "preference": "the method's preference over the tasks (normalised to sum to 1)"}

def _act(action: str, rid: str) -> None:
    """Button callbacks: run before the fragment redraws, so the new status shows at once."""
    st.session_state.pop("live_action_error", None)
    reason = refused(ACTIONS[action], show=False)  # the server's check: a disabled button is the browser's word
    if reason:
        st.session_state["live_action_error"] = reason
        return
    try:
        if action == "pause":
            manager().pause(rid)
        elif action == "resume":
            manager().resume(rid)
        elif action == "stop":
            manager().stop(rid)
        elif action == "continue":
            manager().resume_run(rid)
    except MTLError as e:
        st.session_state["live_action_error"] = str(e)


def _apply_weights(rid: str, tasks: list[str]) -> None:
    weights = {t: float(st.session_state[f"live_w_{rid}_{t}"]) for t in tasks}
    st.session_state.pop("live_action_error", None)
    reason = refused("run.retune", show=False)
    if reason:
        st.session_state["live_action_error"] = reason
        return
    try:
        manager().set_weights(rid, weights)
        st.session_state["live_action_note"] = "New weights sent; they apply from the run's next step and are marked on the curves."
    except MTLError as e:
        st.session_state["live_action_error"] = str(e)


def _header(run: dict) -> None:
    """Name, status and what the run is: drawn with the page, which reruns when the status changes."""
    status = run["status"]
    cfg = run["config"]
    method = cfg.get("weighting", {}).get("method", "?")
    arch = cfg.get("model", {}).get("architecture", "?")
    st.markdown(f"### {run['name']} &nbsp; :{STATUS_BADGE.get(status, 'gray')}-badge[{status}]")
    attempts = manager().store.events(run["id"], "attempt")  # a run trained as a Ray task: on which node
    node = attempts[-1]["payload"].get("node", "") if attempts else ""
    where = " · ".join(x for x in (f"host {run['host']}" if run.get("host") else "",
                                   f"pid {run['pid']}" if run.get("pid") else "",
                                   f"Ray node {node[:8]}" if node else "",
                                   f"attempt {len(attempts)}" if len(attempts) > 1 else "") if x)
    st.caption(f"`{run['id']}` · {', '.join(cfg.get('tasks', []))} · {arch} · {method} · "
               f"started from {run.get('source') or '?'} · device {run.get('device') or '?'}"
               + (f" · trained on {where}" if where else ""))
    tags = run.get("tags") or {}
    if tags.get("study"):  # a run of a study: its place in it, one click from the study's page
        st.markdown(f"Part of study [{tags['study']}](/studies?study={tags['study']}): "
                    f"{tags.get('label') or tags.get('role', '')}, seed {tags.get('seed', '?')}")


def _messages(run: dict) -> None:
    status = run["status"]
    if status == RunStatus.FAILED:
        st.error(f"Training failed: {run.get('error') or 'no reason was recorded'}")
        if run.get("traceback"):
            with st.expander("Traceback"):
                st.code(run["traceback"], language="text")
    elif status == RunStatus.INTERRUPTED:
        st.warning(run.get("error") or "The process training this run stopped.")
    elif status == RunStatus.QUEUED:
        st.info("Waiting for a free training slot; it starts as soon as another run ends.")


def _progress(run: dict) -> None:
    status = run["status"]
    info = run.get("info") or {}
    total = max(1, int(run.get("total_steps") or 0))
    step = int(run.get("step") or 0)
    frac = min(1.0, step / total)
    if status in ACTIVE:
        text = f"step {step:,} / {total:,}"
        if status == RunStatus.RUNNING and info.get("eta_s") is not None:
            text += f" · ETA {format_duration(info['eta_s'])}"
        if info.get("images_per_s"):
            text += f" · {info['images_per_s']:,.0f} images/s"
        st.progress(frac, text=text)
    else:
        st.progress(frac, text=f"step {step:,} / {total:,} · took {format_duration(info.get('elapsed_s'))}")


def _controls(store, run: dict, active: bool, meta: dict) -> None:
    """Pause, resume, stop and retune any run that is alive, wherever it trains (this dashboard,
    the command line, a torchrun job: the commands go through the run store); continue one that
    ended early from its last checkpoint."""
    rid, status = run["id"], run["status"]
    # shared mode, a viewer: the buttons show, disabled, saying why
    paused, stop, resume = why_not("run.pause"), why_not("run.stop"), why_not("run.continue")
    if active:
        view_only_caption("pauses, stops and retunes runs")
        c1, c2, c3, _ = st.columns([1, 1, 1, 4])
        if status == RunStatus.PAUSED:
            c1.button("Resume", key=f"live_resume_{rid}", on_click=_act, args=("resume", rid), type="primary",
                      icon=":material/play_arrow:", disabled=bool(paused), help=paused)
        else:
            c1.button("Pause", key=f"live_pause_{rid}", on_click=_act, args=("pause", rid),
                      disabled=status != RunStatus.RUNNING or bool(paused), icon=":material/pause:", help=paused)
        c2.button("Stop", key=f"live_stop_{rid}", on_click=_act, args=("stop", rid), icon=":material/stop:",
                  disabled=bool(stop), help=stop or "Ends the run and saves a checkpoint you can continue from later.")
    elif status in RESUMABLE and store.latest_checkpoint(rid) is not None:
        st.button("Continue from the last checkpoint", key=f"live_continue_{rid}", on_click=_act,
                  args=("continue", rid), icon=":material/replay:", disabled=bool(resume), help=resume)
    if "live_action_note" in st.session_state:  # a toast outlives the next refresh, a success box would not
        st.toast(st.session_state.pop("live_action_note"), icon=":material/check:")
    if st.session_state.get("live_action_error"):  # stays until the next action
        st.error(st.session_state["live_action_error"])
    if active:
        _weights_form(run, meta, store.events(rid, "weights"))


def _weights_form(run: dict, meta: dict, changes: list[dict]) -> None:
    """Sliders for the task weights, for a method that uses them; otherwise why it does not."""
    rid, tasks = run["id"], list(run["config"].get("tasks", []))
    method = run["config"].get("weighting", {}).get("method", "static")
    about = method_meta(method)
    if not about["uses_weights"]:
        st.caption(f"Task weights cannot be changed for this run: {method} does not use weights set by a person "
                   f"({about['weights_note']}).")
        return
    current = weights_in_force(run["config"], changes)
    with st.expander("Change task weights while it trains", expanded=False):
        st.caption(f"For {method} they are {WEIGHT_USES.get(about['uses_weights'], 'task weights')}.")
        with st.form(f"live_weights_{rid}", border=False):
            cols = st.columns(min(len(tasks), 3) or 1)
            for i, t in enumerate(tasks):
                key = f"live_w_{rid}_{t}"
                # value= rather than a preset session_state entry: inside a form in a fragment the
                # browser showed a preset as 0.00; a fixed range keeps the widget's identity stable
                cols[i % len(cols)].slider(meta[t].label if t in meta else t, WEIGHT_MIN, WEIGHT_MAX,
                                           float(current.get(t, 1.0)), step=WEIGHT_STEP, key=key)
            locked = why_not("run.retune")
            st.form_submit_button("Apply", type="primary", on_click=_apply_weights, args=(rid, tasks),
                                  disabled=bool(locked), help=locked)


def _charts(view, tasks: list[str]) -> None:
    rid = view.run["id"]
    left, right = st.columns(2)
    with left:
        live_chart(view.figures["total"], key=f"live_total_{rid}")
    with right:
        live_chart(view.figures["weights"], key=f"live_weights_fig_{rid}")
    if len(tasks) > MANY_TASKS:  # forty charts would bury each other: a table of every task, a few charted
        cache = feeds().feed(rid).cache
        st.dataframe(pd.DataFrame(task_rows(cache, tasks, view_meta(tasks))), hide_index=True, width="stretch",
                     height=min(38 + 35 * len(tasks), 320), key=f"live_task_table_{rid}")
        key = f"live_drawn_{rid}"
        if key not in st.session_state:
            st.session_state[key] = tasks[:DRAWN_AT_FIRST]
        labels = view_meta(tasks)
        tasks = st.multiselect(f"Tasks to chart ({len(tasks)} in all)", tasks, key=key,
                               format_func=lambda t: labels[t].label) or []
    for row in range(0, len(tasks), 2):
        cols = st.columns(2)
        for col, t in zip(cols, tasks[row:row + 2], strict=False):
            with col:
                live_chart(view.figures[f"task:{t}"], key=f"live_task_{rid}_{t}")


def _conflict(rid: str, config: dict) -> None:
    """Gradient conflict (Yu et al., NeurIPS 2020): when and which tasks pull the shared weights apart."""
    tasks, every = list(config.get("tasks", [])), int(config.get("gradstats_every", 50) or 0)
    if len(tasks) < 2:
        return  # one task: nothing to conflict with
    where = ("the shared representation (the method works there: rep_grad)" if config.get("weighting", {}).get("rep_grad")
             else "the shared parameters")
    figures, grad_step = cached_conflict(feeds().feed(rid).cache)
    st.markdown("#### Gradient conflict")
    if "gradcos_matrix" not in figures:
        st.caption(f"Gradient statistics every {every} steps; none yet." if every else
                   "Gradient statistics are off for this run (gradstats_every = 0).")
        return
    st.caption(f"Cosine of two tasks' gradients on {where}, recorded every {every} steps: "
               "below 0 (red) the tasks pull the shared weights in opposing directions, near 1 (blue) they agree. "
               f"The matrix is the latest recorded step ({grad_step:,}).")
    left, right = st.columns([2, 3])
    with left:
        live_chart(figures["gradcos_matrix"], key=f"live_gradcos_matrix_{rid}")
    with right:
        live_chart(figures["gradcos"], key=f"live_gradcos_{rid}")
    live_chart(figures["gradnorm"], key=f"live_gradnorm_{rid}")


def _final_table(store, run: dict) -> None:
    report = final_report(store.metrics(run["id"]), run["config"])
    values = report.values
    if not values:
        return
    split = "test" if report.split in ("test", "test_best") else report.split
    rows = [{"task": k.split("/", 1)[0], "metric": k.split("/", 1)[1], "value": v}
            for k, v in values.items() if not k.startswith("loss/")]
    rows += [{"task": k.split("/", 1)[1], "metric": "loss", "value": v} for k, v in values.items() if k.startswith("loss/")]
    st.markdown(f"**Final metrics** ({split} split; model: {report.how})")
    st.dataframe(rows, hide_index=True, column_config={"value": st.column_config.NumberColumn(format="%.4f")})
    name = run["config"].get("benchmark")
    if name:
        published_table(name, values, run["config"].get("weighting", {}).get("method", ""))


def _drawn_with(run: dict) -> tuple:
    """What the header and controls show: the page redraws them when it changes."""
    return run["status"], run.get("device"), run.get("host"), run.get("pid")


def status_panel(store, rid: str, shown: tuple, polling: bool) -> None:
    """The part that refreshes every second: the progress bar (step, ETA, images/s). The rest of
    the status is drawn with the page: when it changes (``shown``: what the page was drawn with,
    the status and where the run trains) or the run has ended, one full rerun redraws it, its
    controls and messages, and sets every fragment polling, or not."""
    run = run_row(store, rid)  # one read a second for all viewers together
    if run is None or _drawn_with(run) != shown:  # a change: make sure with a read of one's own
        run = store.get_run(rid)
    if run is None:
        st.warning(f"Run `{rid}` was deleted.")
        return
    _progress(run)
    ended = run["status"] in TERMINAL and not manager().is_active(rid)
    if polling and (_drawn_with(run) != shown or ended):
        st.rerun()


def chart_panel(store, rid: str, smoothing: float, log_y: bool, meta: dict, polling: bool = True) -> None:
    """The part that refreshes every few seconds: read new rows, redraw the charts. Its own
    fragment, so the once-a-second status refresh neither re-serialises nor resends them."""
    # shared by every viewer of the run; once it has ended (no more polling), from its last rows
    view = live_view(store, rid, smoothing, log_y, meta, cosine_matrix, fresh=None if polling else 0.0)
    if view is None:
        return
    run = view.run
    if feeds().feed(rid).cache.count == 0 and run["status"] in (RunStatus.QUEUED, RunStatus.RUNNING):
        st.caption("Waiting for the first training step ...")
    _charts(view, view.tasks)
    if run["status"] in TERMINAL:
        _final_table(store, run)


def conflict_panel(rid: str, config: dict) -> None:
    """Gradient conflict, on a slower clock: its statistics arrive only every ``gradstats_every``
    steps, so redrawing its three charts with the others every 3 s would show nothing new."""
    _conflict(rid, config)


st.title("Live training")
run_id = run_picker("run")
if run_id is None:
    st.info("No runs yet. Start one on **Setup**, or from a shell: `python -m mtl_core train --steps 500`.")
    st.stop()

with st.sidebar:
    smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="live_smoothing",
                          help="Exponential moving average with TensorBoard's debiasing; the raw curve stays faint.")
    log_y = st.toggle("Log-scale losses", key="live_log_y")

store = manager().store
first = store.get_run(run_id)
if first is None:
    st.warning(f"Run `{run_id}` does not exist (it may have been deleted). Pick another one in the sidebar.")
    st.stop()
meta = {t: TaskMeta(t, **m) for t, m in task_meta(first["config"].get("tasks", []),
                                                  first["config"].get("task_specs")).items()}


def view_meta(tasks: list[str]) -> dict:
    return {t: meta.get(t, TaskMeta(t)) for t in tasks}


active = manager().is_active(run_id)
polling = first["status"] not in TERMINAL or active
_header(first)
show_notes(first)
st.fragment(status_panel, run_every=(VIEWER_STATUS_SECONDS if viewer() else STATUS_SECONDS) if polling else None)(store, run_id, _drawn_with(first), polling)
with st.container():  # one block whatever it holds, so the charts below keep their place (and zoom)
    _messages(first)
    _controls(store, first, active, meta)
    notes_editor(first)
st.fragment(chart_panel, run_every=CHART_SECONDS if polling else None)(store, run_id, smoothing, log_y, meta, polling)
st.fragment(conflict_panel, run_every=CONFLICT_SECONDS if polling else None)(run_id, first["config"])
