"""Setup's "Start as a study": factors to vary over the form's config (methods, architectures, a
task's weight as a log range), seeds, baselines and the quick preset; the study's size or why it
is refused, live; start it, or download the spec ``python -m mtl_core study run`` takes."""
from __future__ import annotations

from typing import Any

import streamlit as st

from mtl_core.config import ExperimentConfig
from mtl_core.errors import ConfigError, MTLError
from mtl_core.models import ARCHITECTURES
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import expand
from mtl_core.weighting import WEIGHTINGS, method_meta
from ui import config_state as cs
from ui.roles import refused, why_not
from ui.state import manager

ss = st.session_state
KEEP = "session"  # as the rest of Setup's form: widgets keep their values across page switches
STUDIES_PAGE = "pages/studies.py"


def start_study(spec: Any) -> None:
    """Queue the study's runs and open it on the Studies page (or say why it could not start)."""
    try:
        with st.spinner("Queueing the study's runs…"):
            study_id = StudyRunner(manager()).start(spec)
    except MTLError as e:
        st.error(f"The study could not start: {e}", icon=":material/error:")
        return
    ss["study_id"] = study_id
    st.switch_page(STUDIES_PAGE, query_params={"study": study_id})


def study_section(cfg: ExperimentConfig, errors: list[ConfigError], methods: list[str], titles: dict[str, str]) -> None:
    """Factors to vary over the form's config, the study's size (or why it is refused), start, download."""
    S = cs.STUDY
    for name, value in cs.STUDY_DEFAULTS.items():
        ss.setdefault(S + name, value)
    st.caption("Many runs as one experiment, on the settings above as the base: every combination of the chosen "
               "factors, each with every seed, and (if on) each task learnt alone with the same seeds, so the "
               "Studies page can show each level's mean ± 95% CI, Δm against the baselines and which levels "
               "cannot be told apart.")
    a, b = st.columns(2)
    with a:
        st.multiselect("Weighting methods", methods, key=S + "methods", persist_state=KEEP,
                       format_func=lambda m: f"{m} ({WEIGHTINGS.get(m).kind})" if m in WEIGHTINGS else m,
                       placeholder="the method set above",
                       help="One level per method, each with its default hyperparameters; none: the method above.")
        st.multiselect("Architectures", ARCHITECTURES.available(), key=S + "archs", persist_state=KEEP,
                       placeholder="the architecture set above")
    with b:
        c1, c2 = st.columns(2)
        c1.number_input("Seeds", min_value=1, max_value=10, step=1, key=S + "seeds", persist_state=KEEP,
                        help="Seeds 1..N for every level: the error bars come from them.")
        c2.checkbox("Single-task baselines", key=S + "baselines", persist_state=KEEP,
                  help="Each task learnt alone with the same data, model and seeds (reused when an earlier study "
                       "trained them), for Δm.")
        st.checkbox("Quick (32 px, a few hundred steps …)", key=S + "quick", persist_state=KEEP,
                  help="Replaces the data, steps and evaluation settings above with the quick preset's "
                       "(assets/studies/quick_methods.json): a study of 15 runs in minutes on a laptop. "
                       "Your tasks stay as they are.")
    st.checkbox("Sweep a task's weight (log-spaced)", key=S + "sweep", persist_state=KEEP,
              help="Several weights of one task, to draw the trade-off between the tasks.")
    if ss[S + "sweep"]:
        if ss.get(S + "sweep_task") not in cfg.tasks:
            ss[S + "sweep_task"] = cfg.tasks[-1] if cfg.tasks else None
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Task", list(cfg.tasks), key=S + "sweep_task", format_func=lambda t: titles.get(t, t))
        c2.number_input("Lowest weight", min_value=0.0, step=0.1, format="%g", key=S + "sweep_lo", persist_state=KEEP)
        c3.number_input("Highest weight", min_value=0.0, step=1.0, format="%g", key=S + "sweep_hi", persist_state=KEEP)
        c4.number_input("Weights", min_value=2, max_value=12, step=1, key=S + "sweep_n", persist_state=KEEP)
        deaf = [m for m in (ss[S + "methods"] or [cfg.weighting.method]) if m in WEIGHTINGS
                and not method_meta(m)["uses_weights"]]
        if deaf:
            st.caption(f":orange[{', '.join(deaf)} {'does' if len(deaf) == 1 else 'do'} not use weights set by a "
                       f"person: {'its' if len(deaf) == 1 else 'their'} levels at different weights train alike.]")
    st.text_input("Study name", key=S + "name", persist_state=KEEP, placeholder=cfg.name or "study from Setup")
    if errors:
        st.warning("Fix the problems above first: the study's runs are built from these settings.",
                   icon=":material/warning:")
        spec = None
    else:
        try:
            spec = cs.study_spec(cfg, cs.study_choices(ss))

            planned = expand(spec)
        except ConfigError as e:
            spec = None
            st.error(f"This study is refused: {e}", icon=":material/error:")
        else:
            st.markdown(f"**{cs.study_size(spec, planned)}**")
            run_cfg = planned[0].config
            st.caption(f"Runs like: {cs.describe(run_cfg)}; trained {manager().max_concurrent} at a time.")
    left, right, _ = st.columns([1, 1, 3])
    locked = why_not("study.start")  # shared mode, a viewer: the owner starts studies
    if left.button("Start study", type="primary", disabled=spec is None or bool(locked), key="setup.study_start",
                   icon=":material/science:", help=locked) and not refused("study.start"):
        start_study(spec)
    # deferred: the JSON is written when a person clicks, not at every rerun of the form
    right.download_button("Download spec", data=spec.to_json if spec is not None else "", disabled=spec is None,
                          file_name=f"{(spec.name if spec else 'study').replace(' ', '_')[:60]}.json",
                          mime="application/json", key="setup.study_download", on_click="ignore",
                          icon=":material/download:", help="The JSON `python -m mtl_core study run SPEC.json` takes.")
