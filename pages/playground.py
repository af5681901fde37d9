"""Gradient playground: every weighting method's path on the MTL papers' two-parameter toys.

Two task losses (or three) over two parameters, as CAGrad, Nash-MTL, FAMO and Jacobian descent
open their papers with: pick methods, starting points (or click the plot), the step size and each
task's loss scale, and the paths redraw as their steps are computed. The methods are the
weighting registry's own classes (:mod:`mtl_core.playground.simulate`), so what a student sees
is what trains. The whole state is in the URL (:mod:`ui.playground_state`); ``predict=1`` asks
for a prediction before the paths show.
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pandas as pd
import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.playground import analysis
from mtl_core.playground.problems import PROBLEMS, Problem
from mtl_core.playground.simulate import MAX_STARTS, OPTIMIZERS, Paths, Simulation
from mtl_core.weighting import WEIGHTINGS, method_meta
from ui import playground_state
from ui.entry import through_app
from ui.playground_charts import clicked_point, playground_figure
from ui.predict_box import predict_box

through_app()  # a link opened first on a fresh server: rerun through app.py

FIRST_CHUNK = 40  # steps before the first frame: it must show within 150 ms of a slider's move
FRAME_S = 0.3  # then a redraw every so often as the paths grow

LR_CHOICES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
STEP_CHOICES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
SCALE_CHOICES = (0.01, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0)
ss = st.session_state


def frame_gap(methods: int, built_s: float) -> float:
    """Seconds until the next frame of growing paths: ``FRAME_S`` for up to four methods, longer
    for more (the browser redraws every path at each frame: with 28 methods about a second of
    CPU, which on a machine that also computes the paths slowed them fivefold), and never less
    than three times what the last frame took to build."""
    return max(FRAME_S * max(1.0, methods / 4), 3.0 * built_s)


@st.cache_resource(show_spinner=False, max_entries=16)
def _problem_view(spec: tuple, scales: tuple) -> tuple[Problem, analysis.Reference, tuple]:
    state = playground_state.PlaygroundState(problem=spec[0], expressions=spec[1], box=spec[2])
    problem = state.build_problem()
    s = np.asarray(scales) if len(scales) == len(problem.tasks) else np.ones(len(problem.tasks))
    return problem, analysis.reference(problem, s), analysis.contours(problem, s)


@st.cache_resource(show_spinner=False, max_entries=24)
def _finished(key: tuple) -> dict:
    return {}  # filled once a simulation of ``key`` completes: {"paths": Paths}


def _go(state: playground_state.PlaygroundState) -> None:
    st.query_params.from_dict({**state.params(), **({"predict": "1"} if predict_mode else {})})


def _set_later(**widgets) -> None:
    """Widget values to set before the widgets are drawn on the next run (a click or a button
    changes what a keyed widget shows; Streamlit lets a key be set only before its widget)."""
    ss.setdefault("pg_pending", {}).update(widgets)


for _key, _value in ss.pop("pg_pending", {}).items():
    ss[_key] = _value


st.title("Gradient playground")
state, problems = playground_state.read(dict(st.query_params.to_dict()), WEIGHTINGS.available())
predict_mode = st.query_params.get("predict", "") in ("1", "true", "yes")
for p in problems:
    st.warning(p, icon=":material/link_off:")
st.caption("Two task losses over two parameters, as the MTL papers open with. Each method is the weighting code a run "
           "trains with, stepped from every starting point at once; the paths grow as their steps are computed. "
           "Everything is in the link, so a link shares what you see.")

# ------------------------------------------------------------------ the controls
names = [*PROBLEMS.available(), playground_state.TYPED]
titles = {n: (PROBLEMS.get(n)().title if n in PROBLEMS else "Your own losses") for n in names}
with st.sidebar:
    st.subheader("Playground")
    picked = st.selectbox("Problem", names, index=names.index(state.problem), format_func=titles.get, key="pg_problem")
    if picked != state.problem:
        state = playground_state.PlaygroundState(problem=picked, methods=state.methods)
    if state.problem == playground_state.TYPED:
        exprs = []
        for i in range(3):
            default = state.expressions[i] if i < len(state.expressions) else ""
            exprs.append(st.text_input(f"Task {i + 1} loss" + (" (optional)" if i == 2 else ""), default,
                                       key=f"pg_expr{i}", placeholder="e.g. (x - 1)**2 + 0.5*y**2"))
        state.expressions = tuple(e for e in exprs if e.strip())
        box = st.text_input("Box: x min, x max, y min, y max", ",".join(f"{v:g}" for v in state.box), key="pg_box")
        try:
            values = tuple(float(v) for v in box.split(","))
            if len(values) == 4 and values[0] < values[1] and values[2] < values[3]:
                state.box = values
            else:
                st.warning("The box is four numbers: x min < x max, y min < y max.")
        except ValueError:
            st.warning("The box is four numbers separated by commas.")

try:
    problem, ref, grid = _problem_view((state.problem, tuple(state.expressions), tuple(state.box)),
                                       tuple(state.scales or ()))
except MTLError as e:
    st.error(f"{e} Fix the formula in the sidebar; the other problems still work.", icon=":material/function:")
    st.stop()
tasks = problem.tasks
if state.scales is not None and len(state.scales) != len(tasks):
    state.scales = None
    problem, ref, grid = _problem_view((state.problem, tuple(state.expressions), tuple(state.box)), ())

with st.sidebar:
    methods = st.multiselect("Methods", WEIGHTINGS.available(), default=list(state.methods), key="pg_methods",
                             help="Any of the registered weighting methods: loss weightings and gradient methods.")
    state.methods = tuple(methods) or playground_state.DEFAULT_METHODS
    sets = list(problem.starts)
    named = {tuple(map(tuple, v)): k for k, v in problem.starts.items()}
    current = sets[0] if state.starts is None else named.get(tuple(state.starts), "clicked")
    start_set = st.selectbox("Starting points", [*sets, "clicked"], index=[*sets, "clicked"].index(current),
                             key=f"pg_starts_{state.problem}",
                             format_func=lambda s: "your own (click the left plot)" if s == "clicked" else s)
    if start_set != "clicked":
        state.starts = None if start_set == sets[0] else tuple(problem.starts[start_set])
    elif state.starts is None:
        state.starts = tuple(problem.default_starts)
    if start_set == "clicked" and st.button("Clear my starting points", key="pg_clear", icon=":material/delete:",
                                            help="Then click the left plot to put new ones"):
        state.starts = ((float(np.mean(problem.box[:2])), float(np.mean(problem.box[2:]))),)
    optimizer = st.radio("Optimiser", OPTIMIZERS, index=OPTIMIZERS.index(state.optimizer or problem.optimizer),
                         horizontal=True, key=f"pg_opt_{state.problem}")
    state.optimizer = None if optimizer == problem.optimizer and state.optimizer is None else optimizer
    lr_now = state.lr or problem.lr
    lr_opts = sorted({*LR_CHOICES, lr_now, *([problem.paper[1]] if problem.paper else [])})
    lr = st.select_slider("Step size", lr_opts, value=lr_now, key=f"pg_lr_{state.problem}")
    state.lr = None if lr == problem.lr and state.lr is None else float(lr)
    steps_now = state.steps or problem.steps
    steps = st.select_slider("Steps", sorted({*STEP_CHOICES, steps_now, *([problem.paper[2]] if problem.paper else [])}), value=steps_now,
                             key=f"pg_steps_{state.problem}")
    state.steps = None if steps == problem.steps and state.steps is None else int(steps)
    if problem.paper:
        opt_p, lr_p, steps_p = problem.paper
        if st.button(f"The paper's settings ({opt_p}, {lr_p:g}, {steps_p:,} steps)", key="pg_paper",
                     help="The paper's own small steps: about a millisecond a step for four methods."):
            state.optimizer, state.lr, state.steps = opt_p, lr_p, steps_p
            _set_later(**{f"pg_opt_{state.problem}": opt_p, f"pg_lr_{state.problem}": lr_p,
                          f"pg_steps_{state.problem}": steps_p})
            _go(state)
            st.rerun()
    st.markdown("**Loss scales**")
    scales = []
    for i, t in enumerate(tasks):
        now = (state.scales or (1.0,) * len(tasks))[i]
        scales.append(st.select_slider(f"{t} ×", sorted({*SCALE_CHOICES, now}), value=now,
                                       key=f"pg_scale_{state.problem}_{i}"))
    state.scales = None if all(v == 1.0 for v in scales) else tuple(float(v) for v in scales)
    st.caption("A scale multiplies that task's loss. Methods that balance the tasks themselves (UW, IMTL, "
               "MGDA with normalisation, Nash-MTL...) should undo it; plain EW cannot.")
    asked = st.toggle("Ask for a prediction first", value=predict_mode, key="pg_predict_mode",
                      help="Each student predicts which method ends nearest the average optimum before the paths "
                           "show (predict=1 in the link); in shared mode the owner sees how the class predicted.")
    if asked != predict_mode:
        predict_mode = asked

if state.scales is not None:
    problem, ref, grid = _problem_view((state.problem, tuple(state.expressions), tuple(state.box)), state.scales)
scales = np.asarray(state.scales or (1.0,) * len(tasks))
starts = np.asarray(state.starts if state.starts is not None else problem.default_starts, dtype=np.float64)
steps = state.steps or problem.steps
_go(state)

# ------------------------------------------------------------------ the problem
left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader(problem.title)
    st.markdown(problem.about)
    st.caption(f"Source: {problem.citation}")
with right:
    chosen = ", ".join(f"**{m}**" for m in state.methods)
    st.markdown(f"{chosen}; {len(starts)} starting point{'s' if len(starts) != 1 else ''}; "
                f"{state.optimizer or problem.optimizer}, step size {state.lr or problem.lr:g}, {steps:,} steps.")
    cites = st.expander(f"Papers ({len(state.methods)})") if len(state.methods) > 4 else st.container()
    with cites:
        for m in state.methods:
            st.caption(f"{m}: {method_meta(m)['citation']}")

key = (state.problem, tuple(state.expressions), tuple(state.box), tuple(state.methods),
       tuple(map(tuple, starts.tolist())), float(state.lr or problem.lr), steps, state.optimizer or problem.optimizer,
       tuple(scales.tolist()))
done = _finished(key)
question = "playground-" + hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]  # one question per setting
shown = True
if predict_mode:
    rows_known = done.get("rows")
    answer = analysis.nearest_to_optimum(rows_known) if rows_known else None
    shown = predict_box(question, "Which method's paths will end nearest the average optimum (★), on average over "
                        "the starting points?", list(state.methods), answer, key="pg_predict")

# ------------------------------------------------------------------ the paths, as they grow
inspect_step = min(state.step or 0, steps)
chart = st.empty()
paths: Paths | None = done.get("paths")
if not shown:
    fig = playground_figure(problem, ref, grid, None, starts, scales, clickable=False)
    chart.plotly_chart(fig, key="pg_chart_blank", width="stretch")
    st.info("The paths show once you have predicted.", icon=":material/visibility_off:")
    st.stop()
if paths is None:
    progress = st.empty()
    try:
        sim = Simulation(problem, list(state.methods), starts=starts, lr=state.lr, steps=steps,
                         optimizer=state.optimizer, scales=scales)
    except MTLError as e:
        st.error(str(e))
        st.stop()
    began = time.perf_counter()
    sim.advance(FIRST_CHUNK)
    frame, drawn = 0, time.perf_counter()
    chart.plotly_chart(playground_figure(problem, ref, grid, sim.paths(), starts, scales, clickable=False,
                                                 hover=False),
                       key="pg_frame_0", width="stretch")
    last = time.perf_counter()
    gap = frame_gap(len(state.methods), last - drawn)
    while sim.done < sim.total:
        rate = sim.done / max(time.perf_counter() - began, 1e-6)  # steps a second so far
        left_s = (sim.total - sim.done) / rate
        if left_s > 2.0:  # a long run says how long it has left
            progress.caption(f"Step {sim.done:,} of {sim.total:,}: about {left_s:.0f} s to go; the paths grow "
                             "meanwhile.")
        sim.advance(max(20, int(rate * FRAME_S)))
        if time.perf_counter() - last >= gap and sim.done < sim.total:
            frame += 1  # each frame its own element: Streamlit keys are unique within a run
            drawn = time.perf_counter()
            chart.plotly_chart(playground_figure(problem, ref, grid, sim.paths(), starts, scales, clickable=False,
                                                 hover=False),
                               key=f"pg_frame_{frame}", width="stretch")
            last = time.perf_counter()
            gap = frame_gap(len(state.methods), last - drawn)
    progress.empty()
    paths = sim.paths()
    # one update of the shared entry, "paths" last: another session that finds them finds the rest
    done.update(rows=analysis.endpoints(problem, paths, ref, scales), seconds=time.perf_counter() - began)
    done["paths"] = paths
    if predict_mode:
        st.rerun()  # the answer beside the prediction

# ------------------------------------------------------------------ the finished figure: hover, click, a step's arrows
view = st.container()
controls = st.columns([3, 1])
with controls[0]:
    inspect_step = st.slider("Step to look at: every task's descent direction (−gradient, task colours) and the "
                             "update each method took (its colour) are drawn as arrows at this step", 0, steps,
                             inspect_step, key=f"pg_step_{question}")
state.step = inspect_step or None
with controls[1]:
    loss_axes = (0, 1)
    if len(tasks) == 3:
        pair = st.selectbox("Loss space axes", ["A, B", "A, C", "B, C"] if tasks == ("A", "B", "C") else
                            [f"{tasks[0]}, {tasks[1]}", f"{tasks[0]}, {tasks[2]}", f"{tasks[1]}, {tasks[2]}"],
                            key="pg_axes")
        loss_axes = {0: (0, 1), 1: (0, 2), 2: (1, 2)}[[f"{tasks[0]}, {tasks[1]}", f"{tasks[0]}, {tasks[2]}",
                                                       f"{tasks[1]}, {tasks[2]}"].index(pair)]
_go(state)
fig = playground_figure(problem, ref, grid, paths, starts, scales, step=inspect_step, loss_axes=loss_axes)
event = chart.plotly_chart(fig, key="pg_chart", width="stretch", on_select="rerun", selection_mode="points")
point = clicked_point(event, fig)
if point is not None and ss.get("pg_last_click") != point:
    ss["pg_last_click"] = point
    state.starts = (*map(tuple, starts), point)[-MAX_STARTS:]
    _set_later(**{f"pg_starts_{state.problem}": "clicked"})
    _go(state)
    st.rerun()
st.caption(f"Computed in {done.get('seconds', 0):.2f} s. Click anywhere on the left plot to add a starting point "
           "(the starting points become your own); hover a path for its weights, update and gradients at that step.")

# ------------------------------------------------------------------ where each path ended
rows = done["rows"]  # computed with the paths
diverged = sorted({r["method"] for r in rows if r["diverged"]})
if diverged:
    st.warning(f"{', '.join(diverged)} left the numbers (a path became NaN or infinite) and stopped. A method that "
               "takes the logarithm of each loss (FAMO, STCH, DB-MTL) needs losses above 0"
               + (f": this problem's go below 0 (down to {float(np.nanmin(grid[2])):.3g} on average)"
                  if float(np.nanmin(grid[2])) < 0 else "") + "; a smaller step size helps the others.",
               icon=":material/warning:")
best = analysis.nearest_to_optimum([r for r in rows if not r["diverged"]] or rows)
st.markdown(f"**Nearest the average optimum** (on average over the starts): {', '.join(best)}. "
            f"The average optimum is at ({ref.average_optimum[0]:.3g}, {ref.average_optimum[1]:.3g})"
            + (" (found on a grid)" if ref.from_grid else "") + ".")
table = pd.DataFrame([{
    "method": r["method"], "start": f"{r['start']}: ({r['start_x']:.3g}, {r['start_y']:.3g})",
    "end": "diverged" if r["diverged"] else f"({r['end_x']:.3g}, {r['end_y']:.3g})",
    "on the Pareto set": "yes" if r["on_pareto_set"] else "no",
    "distance to ★": r["distance_to_average_optimum"], "Pareto stationarity": r["stationarity"],
    "settled at step": r["settled_at_step"]} for r in rows])
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "distance to ★": st.column_config.NumberColumn(format="%.3g"),
    "Pareto stationarity": st.column_config.NumberColumn(
        format="%.2g", help="the norm of the min-norm combination of the task gradients at the end, over the largest "
        "gradient: 0 where no step helps every task (Pareto-stationary), 1 where the tasks agree")})
