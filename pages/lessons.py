"""Lessons: a point about multi-task learning, shown by runs that prove it.

Each lesson (``assets/lessons/*.json``, :mod:`mtl_core.lessons`) says what to look for, starts its
study with one button, draws the charts that make the point live as the runs train, gives its
verdict (the effect it claims, paired by seed, with its 95% CI) once enough seeds are in, and
offers variations to try next. Its whole state is in the URL (:mod:`ui.lesson_state`), so a link
reproduces it; ``instructor=1`` in a link hides the lesson list and the controls a class does not
need.
"""
from __future__ import annotations

import copy
import dataclasses
from urllib.parse import urlencode

import streamlit as st

from mtl_core.errors import ConfigError, MTLError
from mtl_core.lessons.catalog import Lesson, lessons, lessons_dir
from mtl_core.lessons.effect import OUTCOMES, measure, outcome
from mtl_core.store.status import RunStatus
from mtl_core.studies.factors import factor_kind, get_level
from mtl_core.studies.spec import StudySpec, expand
from mtl_core.studies.store import StudyStore, plan_counts
from mtl_core.studies.summary import summarize
from mtl_core.tasks import task_meta
from ui import lesson_state
from ui.access import AccessError
from ui.entry import through_app
from ui.lesson_start import study_active
from ui.lesson_view import chart_figures, level_labels
from ui.live_plot import live_chart
from ui.predict_box import predict_box
from ui.roles import browser_id, class_predictions, lesson_refusal, start_lesson
from ui.shared import fresh_memo
from ui.state import manager
from ui.studies import baseline_levels, drawn_with, progress_text, study_alive
from ui.study_charts import factor_title, level_colors

through_app()  # a link opened first on a fresh server: rerun through app.py

ss = st.session_state
CHART_SECONDS = 3.0
SECONDS_PER_RUN = 14.0  # a lesson run (32 px, 600 steps) on the 2-core machine: 10.5-16.5 s in bench/lessons.py


@st.cache_resource(show_spinner=False, max_entries=4)
def _catalog(folder: str, stamp: tuple) -> tuple[list[Lesson], list[ConfigError]]:
    return lessons(folder)


def _load() -> tuple[list[Lesson], list[ConfigError]]:
    folder = lessons_dir()
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("*.json")))
    return _catalog(str(folder), stamp)


def _go(state: lesson_state.LessonState) -> None:
    """Put a state in the URL (the page reruns from it)."""
    st.query_params.from_dict(state.params())


def _default_of(path: str, spec: StudySpec) -> float:
    """A control's value in the lesson's own study (its base config)."""
    cfg = spec.base_config()
    return float(get_level(cfg.to_dict(), path, factor_kind(path, cfg)))


def _matching_study(spec: StudySpec) -> str:
    """The latest study in the store that ran exactly this spec, whatever its name (a shared link
    finds the class's runs; a variation that only claims something else finds the lesson's)."""
    want = {**spec.to_dict(), "name": ""}
    found = [s for s in StudyStore(manager().store).list() if {**s["spec"], "name": ""} == want]
    return max(found, key=lambda s: s.get("created", 0))["id"] if found else ""


# ------------------------------------------------------------------ which lesson, in which state
catalog, refused = _load()
st.title("Lessons")
if not catalog:
    st.error("No lesson could be loaded from assets/lessons/: " + "; ".join(map(str, refused)))
    st.stop()
state, problems = lesson_state.read(dict(st.query_params.to_dict()), catalog)
by_id = {x.id: x for x in catalog}
lesson = by_id[state.lesson]
for p in problems:
    st.warning(p, icon=":material/link_off:")
if refused and not state.instructor:
    st.caption("Lesson files refused: " + "; ".join(map(str, refused)))

if not state.instructor:
    st.caption("Each lesson makes one point about learning tasks together, and proves it: one button trains a small "
               "study (several seeds, so the verdict comes with a 95% confidence interval), the charts grow as it "
               "trains, and variations are one click away. Everything is in the link, so a link shares the lesson.")
    picked = st.segmented_control(
        "Lesson", [x.id for x in catalog], default=lesson.id, key=f"lesson_pick_{lesson.id}",
        format_func=lambda i: f"{by_id[i].order}. {by_id[i].title}", label_visibility="collapsed")
    if picked and picked != lesson.id:
        _go(lesson_state.LessonState(lesson=picked))
        st.rerun()

variation = lesson.variation(state.variation) if state.variation else None
st.header(f"{lesson.order}. {lesson.title}" + (f" · {variation.label}" if variation else ""))
left, right = st.columns([3, 2], gap="large")
with left:
    st.markdown(lesson.text)
    paper = lesson.paper
    st.markdown(f"**Read:** [{paper['title']}]({paper['url']})" if paper.get("url") else f"**Read:** {paper['title']}")
    if variation is not None:
        st.info(f"**Trying: {variation.label}.** {variation.why}", icon=":material/science:")
        if st.button("Back to the lesson itself", key="lesson_back", icon=":material/undo:"):
            _go(lesson_state.LessonState(lesson=lesson.id, instructor=state.instructor, predict=state.predict))
            st.rerun()

# ------------------------------------------------------------------ the controls and the start
with right, st.container(border=True):
    knobs = dict(state.knobs)
    base_spec = lesson.spec(variation=state.variation)
    for k in lesson.knobs:
        default = _default_of(k.path, base_spec)
        whole = all(float(x).is_integer() for x in (k.lo, k.hi, k.step))  # a width: 8, not 8.00
        cast = int if whole else float
        value = float(st.slider(k.label, cast(k.lo), cast(k.hi), cast(knobs.get(k.path, default)), cast(k.step),
                                help=k.help or None, key=f"lesson_knob_{lesson.id}_{state.variation}_{k.path}"))
        if value != default:
            knobs[k.path] = value
        else:
            knobs.pop(k.path, None)
    default_seeds = len(base_spec.seed_list())
    seeds = default_seeds if state.instructor else int(st.number_input(
        "Seeds", 2, lesson_state.MAX_SEEDS, state.seeds or default_seeds, 1, key=f"lesson_seeds_{lesson.id}",
        help="Every arm of the study is trained once per seed; the verdict's interval narrows with more seeds."))
    wanted = lesson_state.LessonState(lesson.id, state.variation, knobs, seeds if seeds != default_seeds else None,
                                      state.instructor, state.study, state.predict)
    if wanted.knobs != state.knobs or wanted.seeds != state.seeds:
        wanted.study = ""  # another setup is another study
        _go(wanted)
        st.rerun()
    try:
        spec = lesson.spec(knobs, state.variation, seeds)
        planned = expand(spec)
    except ConfigError as e:
        st.error(f"These settings make a study that is refused: {e}", icon=":material/error:")
        st.stop()
    minutes = len(planned) * SECONDS_PER_RUN / 60
    # shared mode: a viewer may start a lesson's study when the owner allows it, within the quota
    store = manager().store
    locked = lesson_refusal(len(planned), len(manager().queue()), lambda sid: study_active(store, sid))
    start = st.button(f"Run this lesson: {len(planned)} runs, about {minutes:.0f} min", type="primary",
                      icon=":material/play_arrow:", key="lesson_start", width="stretch", disabled=bool(locked),
                      help=locked)
    if locked:
        st.caption(f":material/lock: {locked}")
    if start and not locked:
        try:
            study_id = start_lesson(spec)  # a viewer's quota is checked again, and held, as it starts
        except AccessError as e:  # another tab of this browser (or of the class) started one meanwhile
            st.error(str(e), icon=":material/lock:")
        except MTLError as e:
            st.error(f"The lesson's study could not start: {e}", icon=":material/error:")
        else:
            wanted.study = study_id
            _go(wanted)
            st.rerun()

study_id = state.study or _matching_study(spec)
studies = StudyStore(manager().store)
study = studies.get(study_id) if study_id else None
if study_id and study is None:
    st.warning(f"Study `{study_id}` from the link is not in this dashboard's runs; press Run to train it here.")

# ------------------------------------------------------------------ the charts and the verdict
effect = lesson.effect_of(state.variation)
question = f"lesson-{lesson.id}-{state.variation or 'itself'}"
PREDICTION = {"above": f"above 0: the lesson's {'gain' if effect.sign > 0 else 'drop'} shows",
              "unclear": "no clear difference (the interval holds 0)", "below": "below 0"}
if effect.sign < 0:
    PREDICTION = {"above": "above 0", "unclear": "no clear difference (the interval holds 0)",
                  "below": "below 0: the lesson's drop shows"}
if state.predict:
    answer = None
    if study is not None and not study_alive(studies.plan(study_id), study_id=study_id):
        found = outcome(measure(summarize(manager().store, study_id), effect).interval)
        answer = [found] if found else None
    predict_box(question, f"Before the runs say: **{effect.text}** — will it come out above 0, below 0, or with "
                "no clear difference over the seeds?", list(OUTCOMES), answer, format_func=PREDICTION.get,
                key="lesson_predict")


def _computed(study_id: str) -> tuple:
    """The verdict and charts of the lesson's study as the store holds them now."""
    store = manager().store
    study = studies.get(study_id)
    plan = studies.plan(study_id)
    counts = plan_counts(plan)
    alive = study_alive(plan, study_id=study_id)
    summary = summarize(store, study_id)
    measured = measure(summary, effect)
    meta = task_meta(summary.tasks, summary.task_specs)
    labels = level_labels(summary, lesson.level_names)
    colors = level_colors([lv.label for lv in summary.levels])
    try:
        spec = StudySpec.from_dict(study["spec"])
    except MTLError:
        spec = None
    baselines = baseline_levels(spec, plan) if spec is not None else []
    factors = list(spec.factors) if spec is not None and not lesson.level_names else []
    figures = [f for chart in lesson.charts for f in chart_figures(chart, store, summary, baselines, meta, labels, colors,
                                                                    factor_title(factors), measured, study_id)]
    return study, plan, counts, alive, measured, figures


def _result(study_id: str, shown: tuple) -> None:
    """Every few seconds while the study trains: the progress, the verdict so far and the charts;
    computed once for every viewer of the lesson (a class watching it: ``ui.shared.fresh_memo``)."""
    plan = studies.plan(study_id)
    mark = tuple((row["run_id"], row["run"]["status"], row["run"]["step"]) if row["run"] else (row["key"],)
                 for row in plan)  # what the charts are drawn from: the runs' steps
    study, plan, counts, alive, measured, figures = fresh_memo(
        "lesson_result", (lesson.id, state.variation, study_id), mark, lambda: _computed(study_id),
        settled=drawn_with(studies.get(study_id), plan))  # a run that ended: its verdict at once
    st.progress(counts.get(RunStatus.FINISHED, 0) / max(1, counts["total"]), text=progress_text(counts))
    if state.predict and class_predictions().mine(question, browser_id()) is None:
        st.info("**Verdict:** predict it above first; it shows here once you have.", icon=":material/lock:")
    elif measured.holds:
        st.success(f"**Verdict:** {measured.sentence}", icon=":material/verified:")
    elif measured.interval.n >= 2 and not alive:
        st.warning(f"**Verdict:** {measured.sentence}", icon=":material/help:")
    else:
        st.info(f"**So far:** {measured.sentence}", icon=":material/hourglass_top:")
    for i in range(0, len(figures), 2):
        for col, (key, fig) in zip(st.columns(2), figures[i:i + 2], strict=False):
            with col:
                live_chart(fig, key=f"lesson_{study_id}_{key}")
    if shown and (not alive or drawn_with(study, plan) != shown):
        st.rerun()  # a run started or ended: the page (and whether it polls) follows the store


if study is not None:
    plan = studies.plan(study_id)
    alive = study_alive(plan, study_id=study_id)
    st.subheader("What the runs show")
    st.caption(f"Study `{study_id}` · each curve is the mean over the seeds with a ± 1 std band; the verdict pairs "
               "each seed's two arms (the same seed, the same data), and its 95% CI is Student's t over the seeds. "
               "Scores are the final models' on the test split.")
    st.fragment(_result, run_every=CHART_SECONDS if alive else None)(study_id, drawn_with(study, plan) if alive else ())
else:
    st.info("Press **Run this lesson** to train its study; the charts and the verdict appear here as the runs train.",
            icon=":material/play_circle:")

# ------------------------------------------------------------------ try next, and share
if lesson.try_next:
    st.subheader("Try next")
    cols = st.columns(min(3, len(lesson.try_next)))
    for i, v in enumerate(lesson.try_next):
        with cols[i % len(cols)], st.container(border=True):
            st.markdown(f"**{v.label}**")
            st.caption(v.why)
            if st.button("Try it", key=f"lesson_try_{v.id}", disabled=v.id == state.variation, icon=":material/science:"):
                _go(lesson_state.LessonState(lesson.id, v.id, instructor=state.instructor, predict=state.predict))
                st.rerun()

st.subheader("Share")
share = copy.copy(wanted)
share.study = study_id if study is not None else ""
teach = st.toggle("For a class: this lesson only, without the lesson list and the seeds", value=state.instructor,
                  key="lesson_instructor",
                  help="Adds instructor=1 to the link: the class sees this lesson with these settings and its own controls.")
share.instructor = teach
share.predict = st.toggle("Ask for a prediction first: each student predicts the verdict before it shows",
                          value=state.predict, key="lesson_predict_toggle",
                          help="Adds predict=1 to the link. In shared mode you see how the class predicted.")
if share.predict != state.predict:
    _go(dataclasses.replace(state, predict=share.predict))
    st.rerun()
base_url = (getattr(st.context, "url", "") or "").split("?")[0]
st.code(f"{base_url}?{urlencode(share.params())}", language=None)
st.caption("Anyone opening this link sees this lesson with these settings" + (", and this study's runs where they "
           "open it on this dashboard." if share.study else "."))
