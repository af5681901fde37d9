"""Setup: build an experiment (data, tasks, model, loss fusion, augmentation, optimisation), see every problem
next to the widget that caused it, preview the augmentation, and start the run. An example experiment
(``assets/configs/``) or a config file fills the form in one step.

Every widget holds its value in ``st.session_state["cfg.<field>"]`` (see ``ui/config_state.py``);
the config is built from those keys with ``dataclasses.replace`` and checked with
``mtl_core.training.validation.validate`` on every rerun.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import streamlit as st

from mtl_core.config import ON_ERROR, RESIZE_POLICIES, ExperimentConfig
from mtl_core.data import DATASETS, build_dataset
from mtl_core.errors import ConfigError, MTLError
from mtl_core.models import ARCHITECTURES, BACKBONES
from mtl_core.tasks import TASKS, task_meta
from mtl_core.training.validation import (
    DEVICES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    dataset_tasks,
    takes_label_noise,
    validate,
)
from mtl_core.views.preview import preview_samples
from mtl_core.weighting import WEIGHTINGS, method_meta
from mtl_core.weights import WEIGHT_MAX, WEIGHT_MIN, WEIGHT_STEP
from ui import config_state as cs
from ui import setup_form as sf
from ui.entry import through_app
from ui.roles import upload_limit_mb, why_not
from ui.setup_form import EXAMPLE_TABLE, KEEP, Form, first_line, table_columns
from ui.state import manager, open_run
from ui.study_form import study_section

through_app()  # a link opened first on a fresh server: rerun through app.py

ss = st.session_state
K = cs.PREFIX
ROOT = Path(__file__).resolve().parents[1]
FEW_TASKS = 6  # more tasks than this get tables (weights, label budgets) instead of a widget each
RESIZE_WORDS = {"": "the dataset's default", "letterbox": "letterbox (keep the aspect, pad)",
                "stretch": "stretch to fit", "crop": "crop the centre"}
ON_ERROR_WORDS = {"fail": "refuse to start (list them)", "skip": "skip them (the run says how many)"}
PREVIEW_SAMPLES = 4
SECTIONS = ("data", "tasks", "model", "weighting", "augment", "optim", "start")
HEADS = {"": "the task's own", "aspp": "ASPP, then the task's own"}
ADVANCED = ("optim.scheduler", "optim.warmup_steps", "optim.step_size", "optim.gamma", "optim.weight_decay",
            "optim.momentum", "optim.grad_clip", "precision", "eval_every", "checkpoint_every", "gradstats_every", "time_limit")


@st.cache_data(show_spinner="Opening the dataset…", max_entries=16, ttl=60)
def _open_problem(key: str) -> tuple[str, str] | None:
    """``(field, message)`` when the dataset cannot be opened as set up (files missing, say)."""
    try:
        build_dataset(ExperimentConfig.from_json(key), "train")
    except ConfigError as e:
        return e.field, e.message
    except MTLError as e:
        return "data.root", str(e)
    return None


def _config_problems(cfg: ExperimentConfig) -> list[ConfigError]:
    """Everything wrong with the form's config, each naming its field."""
    try:
        errors = validate(cfg)
    except MTLError as e:  # a dataset that cannot even be opened, say
        errors = [e if isinstance(e, ConfigError) else ConfigError("config", str(e))]
    if cfg.data.dataset != "scenes" and not any(e.field.startswith("data.") for e in errors):
        problem = _open_problem(dataclasses.replace(ExperimentConfig(), data=cfg.data, tasks=cfg.tasks,
                                                    task_specs=cfg.task_specs).to_json())
        if problem is not None:  # validate() cannot know whether the files are there: opening them does
            errors.append(ConfigError(*problem))
    return errors


# ------------------------------------------------------------------ widget helpers
@st.cache_data(show_spinner=False, max_entries=32)
def _preview(key: str, n: int, draw: int) -> list:
    return preview_samples(ExperimentConfig.from_json(key), n, "train", True, draw)


def _pair(left: str, right: str) -> tuple[Any, Any]:
    """Two sections side by side; when one of them is hidden for a class, the other takes the width."""
    if hidden is None or (left in shown and right in shown):
        return tuple(st.columns(2, gap="large"))
    return st.container(), st.container()


def _where(section: str, place: Any) -> Any:
    """Where a section goes: its place on the page, or the collapsed expander of hidden settings."""
    return place if section in shown or hidden is None else hidden


# ------------------------------------------------------------------ page
cs.load_link(ss, st.query_params.get("config"))
cs.ensure(ss)
cfg = cs.build(ss)
ss["setup.config"] = cfg  # the Data page and tests read the form's config here
errors = _config_problems(cfg)
form = Form(errors)

st.title("Setup")
st.caption("Choose the data, the tasks, the model, how the task losses are fused and how training "
           "runs. Problems show next to the setting that causes them; Start is enabled once there are none.")

note = ss.get("setup.link_note")
if note:
    (st.error if note[0] == "error" else st.success)(note[1], icon=":material/link:")
shown = cs.link_sections(ss, SECTIONS) if st.query_params.get("instructor") == "1" else set(SECTIONS)
instructor = shown != set(SECTIONS)
hidden = st.expander("Settings this exercise leaves as they are", icon=":material/visibility_off:") if instructor else None
if instructor:
    st.caption("Set up from a shared link: only the settings this exercise changes are shown.")
examples = {ex.file: ex for ex in cs.examples()} if not instructor else {}
if examples:
    st.columns([2, 3])[0].selectbox(
        "Load an example", list(examples), index=None, key="setup.example", on_change=sf.on_example, args=(examples,),
        placeholder="Choose an example experiment to fill the form with …",
        format_func=lambda f: f"{examples[f].name} ({f})",
        help="Example experiments kept in assets/configs/; choosing one sets every setting below, which you can "
             "then change.")
if ss.get("setup.example_error"):
    st.error(ss["setup.example_error"], icon=":material/error:")
elif ss.get("setup.example_ok"):
    st.success(ss["setup.example_ok"])

with _where("files", st.container()), st.expander("Load or save a config file", expanded=bool(ss.get("setup.upload_error"))):
    up, down = st.columns([3, 2])
    with up:
        st.file_uploader("Load a config (JSON saved from here or by the CLI)", type=["json"], key="setup.upload",
                         on_change=sf.on_upload, max_upload_size=upload_limit_mb())  # shared mode: every upload's limit
        if ss.get("setup.upload_error"):
            st.error(f"Could not load the file: {ss['setup.upload_error']}", icon=":material/error:")
        elif ss.get("setup.upload_ok"):
            st.success(f"Loaded {ss['setup.upload_ok']}: the settings below now hold its values.")
    with down:
        st.download_button("Download this config (JSON)", data=cfg.to_json(), mime="application/json",
                           file_name=f"{(cfg.name or 'experiment').replace(' ', '_')[:60]}.json",
                           key="setup.download", on_click="ignore", icon=":material/download:")
        st.button("Reset to defaults", key="setup.reset", on_click=sf.on_reset, icon=":material/restart_alt:")

data_col, task_col = _pair("data", "tasks")
with _where("data", data_col), st.container(border=True):
    st.subheader("Data")
    datasets = DATASETS.available()
    dataset = form.select("data.dataset", "Dataset", datasets, fmt=lambda d: "built-in scenes" if d == "scenes" else d,
                     on_change=sf.on_dataset)
    if dataset == "scenes":
        st.caption("Coloured shapes on textured, noisy backgrounds, generated on the fly; every image "
                   "has labels for all tasks.")
        a, b = st.columns(2)
        with a:
            form.slider("data.height", "Image size (px)", 32, 128, 16)
            form.problems("data.image_size")
            form.slider("data.max_objects", "Objects per image (at most)", 1, 10, 1)
        with b:
            form.slider("data.num_shapes", "Shape classes", 2, 6, 1)
            form.slider("data.noise", "Noise", 0.0, 0.5, 0.01)
        a, b, c = st.columns(3)
        with a:
            form.number("data.train_size", "Training samples", step=500)
        with b:
            form.number("data.val_size", "Validation samples", step=128)
        with c:
            form.number("data.test_size", "Test samples", step=128)
    else:
        if dataset in DATASETS:
            st.caption(first_line(DATASETS.get(dataset).__doc__))
        if dataset == "manifest":
            a, b = st.columns([2, 1], vertical_alignment="bottom")
            a.text_input("Label table (.csv or .jsonl)", key=K + "data.root", persist_state=KEEP,
                         help="One row per image: a column 'image' (a path relative to the table), an optional 'split' "
                              "(train, val or test) and one column per task. See the README's 'Your own data'.")
            b.button("Example", key="setup.example_table", on_click=sf.on_example_table,
                     icon=":material/photo_library:", help=f"{EXAMPLE_TABLE.relative_to(ROOT)}: 120 photos, three tasks")
        else:
            st.text_input("Data folder", key=K + "data.root", persist_state=KEEP,
                          help="Where the dataset lives on this machine")
        form.problems("data.root")
        a, b = st.columns(2)
        with a:
            form.select("data.resize", "Other shapes", ["", *RESIZE_POLICIES],
                        fmt=lambda p: RESIZE_WORDS.get(p, p), help="How an image of another shape is brought to the "
                        "size above; boxes and masks follow it exactly")
        with b:
            form.select("data.on_error", "On bad rows", list(ON_ERROR), fmt=lambda p: ON_ERROR_WORDS.get(p, p),
                        help="A missing image, an unknown class, a box outside its image … (the Data page lists them)")
        a, b, c = st.columns(3)
        with a:
            form.slider("data.height", "Image height (px)", 32, 512, 16)
        with b:
            form.slider("data.width", "Image width (px)", 32, 512, 16)
        with c:
            form.number("data.train_size", "Training samples (at most)", step=500)
        form.problems("data.image_size")
    form.problems("data")

with task_col, st.container(border=True):
    st.subheader("Tasks")
    try:
        supplied = list(dataset_tasks(cfg) or TASKS.available())
    except MTLError:
        supplied = [] if cfg.data.dataset == "manifest" else TASKS.available()
    columns = sf.table_tasks(dataclasses.replace(ExperimentConfig(), data=cfg.data, task_specs=cfg.task_specs).to_json()) \
        if cfg.data.dataset == "manifest" else []
    kinds = {t["name"]: {"kind": t["kind"]} for t in columns if t["kind"]}
    about = task_meta(list(dict.fromkeys([*TASKS.available(), *supplied, *cfg.tasks])), {**kinds, **cfg.task_specs})
    titles = {t: m["title"] for t, m in about.items()}
    options = supplied + [t for t in ss[K + "tasks"] if t not in supplied]
    if columns:
        table_columns(columns)
    pick, every = st.columns([4, 1], vertical_alignment="top")
    every.button("All", key="setup.all_tasks", on_click=sf.select_all, args=(supplied,), help="Select every task it supplies",
                 disabled=set(cfg.tasks) >= set(supplied))
    with pick:
        st.multiselect("Tasks to learn together", options, key=K + "tasks", persist_state=KEEP,
                       format_func=lambda t: titles.get(t, t), help="The dataset supplies labels for these tasks")
        form.problems("tasks")
    form.problems("task_specs")
    if len(cfg.tasks) <= FEW_TASKS:
        for t in cfg.tasks:
            if about.get(t, {}).get("description"):
                st.caption(f"**{titles[t]}**: {about[t]['description']}")
    changed = any(getattr(cfg.data, n) for n in cs.TASK_DATA)
    with st.expander("Scarce, noisy or mis-scaled labels, per task", expanded=changed or any(
            e.field.startswith(tuple(f"data.{n}" for n in cs.TASK_DATA)) for e in errors)):
        st.caption("Training split only. **Labelled**: the share of images that keep this task's label (the others "
                   "are masked from its loss). **Noise**: the share of its labels replaced by a random class (1 = a "
                   "distractor task). **Loss ×**: its loss multiplied before any weighting, as if in other units.")
        if len(cfg.tasks) > FEW_TASKS:  # forty rows of three inputs: one table instead
            share = {"min_value": 0.0, "max_value": 1.0, "step": 0.05}
            form.task_table("setup.budget_table", cfg.tasks, titles, {
                "labelled": ("data.label_fraction", share), "noise": ("data.label_noise", share),
                "loss ×": ("data.loss_scale", {"min_value": 0.0, "max_value": 1e6})})
        for t in (cfg.tasks if len(cfg.tasks) <= FEW_TASKS else ()):
            a, b, c = st.columns(3)
            a.number_input(f"{titles.get(t, t)}: labelled", 0.0, 1.0, step=0.05, key=f"{K}data.label_fraction.{t}",
                           persist_state=KEEP, format="%.2f")
            if takes_label_noise(cfg, t):
                b.number_input("noise", 0.0, 1.0, step=0.05, key=f"{K}data.label_noise.{t}", persist_state=KEEP,
                               format="%.2f")
            c.number_input("loss ×", 0.0, 1e6, step=1.0, key=f"{K}data.loss_scale.{t}", persist_state=KEEP,
                           format="%g")
            for n in cs.TASK_DATA:
                form.problems(f"data.{n}.{t}")

model_col, fusion_col = _pair("model", "weighting")
with _where("model", model_col), st.container(border=True):
    st.subheader("Model")
    arch = form.select("model.architecture", "Architecture", ARCHITECTURES.available())
    if arch in ARCHITECTURES:
        st.caption(getattr(ARCHITECTURES.get(arch), "citation", ""))
    backbone = form.select("model.backbone", "Backbone", BACKBONES.available())
    if backbone in BACKBONES:
        st.caption(first_line(BACKBONES.get(backbone).__doc__))
    a, b = st.columns(2)
    with a:
        form.number("model.width", "Width (channels)", step=4)
    with b:
        st.checkbox("Pretrained weights", key=K + "model.pretrained", persist_state=KEEP,
                    help="ImageNet weights where the backbone has them cached on this machine")
        form.problems("model.pretrained")
    a, b = st.columns(2)
    with a:
        form.select("model.head", "Task heads", ["", "aspp"], fmt=lambda h: HEADS.get(h, h),
                    help="each task's own head on the shared features, or DeepLab-v3's ASPP before it "
                         "(LibMTL's NYUv2 model)")
    with b:
        st.text_input("Weights file (optional)", key=K + "model.weights_path", persist_state=KEEP,
                      placeholder="/models/resnet50-0676ba61.pth",
                      help="a torchvision state dict or an earlier run's checkpoint on this machine, loaded into "
                           "the backbone instead of the cached ImageNet weights; nothing is downloaded")
        form.problems("model.weights_path")
    form.problems("model")

with _where("weighting", fusion_col), st.container(border=True):
    st.subheader("Loss fusion")
    methods = sorted(WEIGHTINGS.available(), key=lambda m: (m != "static", WEIGHTINGS.get(m).kind != "loss", m))
    method = form.select("weighting.method", "Weighting method", methods,
                    fmt=lambda m: f"{m} ({WEIGHTINGS.get(m).kind})" if m in WEIGHTINGS else m,
                    help="loss: a weighted sum of the task losses; gradient: combines per-task gradients")
    cls = cs.method_class(method)
    if cls is not None:
        st.caption(cls.citation)
    st.markdown("**Task weights**")
    about = method_meta(method)
    if not about["uses_weights"]:
        st.caption(f"{method} does not use weights set by a person: {about['weights_note']}.")
    else:
        st.caption(f"For {method}: {about['weights_note']}.")
        if not cfg.tasks:
            st.caption("Select tasks to weight them.")
        if len(cfg.tasks) > FEW_TASKS:  # a slider per task stops being readable: a table of weights
            form.task_table("setup.weights_table", cfg.tasks, titles, {"weight": ("weighting.weights", {
                "min_value": WEIGHT_MIN, "max_value": WEIGHT_MAX, "step": WEIGHT_STEP, "format": "%.2f"})})
        weight_cols = st.columns(max(1, min(3, len(cfg.tasks))))
        for i, t in enumerate(cfg.tasks if len(cfg.tasks) <= FEW_TASKS else ()):
            with weight_cols[i % len(weight_cols)]:
                form.slider(f"weighting.weights.{t}", titles.get(t, t), WEIGHT_MIN, WEIGHT_MAX, WEIGHT_STEP)
    form.problems("weighting.weights", exact=True)
    if cls is not None and cls.defaults:
        st.markdown("**Hyperparameters**")
        param_cols = st.columns(min(3, len(cls.defaults)))
        for i, p in enumerate(cls.defaults):
            with param_cols[i % len(param_cols)]:
                st.number_input(p, key=f"{K}weighting.params.{method}.{p}", persist_state=KEEP, step=0.01, format="%g")
                form.problems(f"weighting.params.{p}")
    form.problems("weighting.params")
    if cs.offers_rep_grad(cls):
        st.toggle("Combine gradients on the shared representation (rep_grad)", key=K + "weighting.rep_grad", persist_state=KEEP,
                  help="Faster: per-task gradients of the shared features instead of all shared parameters")
    form.problems("weighting.rep_grad")
    form.problems("weighting")

with _where("augment", st.container()), st.container(border=True):
    st.subheader("Augmentation")
    st.caption("Applied to training images only; boxes, masks and depth move with the image.")
    checklist, grid = st.columns([1, 2], gap="large")
    with checklist:
        for name, (label, what, lo, hi, step) in cs.AUGMENTS.items():
            on = st.checkbox(label, key=f"{K}augment_on.{name}", persist_state=KEEP)
            if on:
                form.slider(f"augment.{name}", f"{label}: {what}", lo, hi, step)
                if name == "crop":
                    form.slider("augment.crop_scale_min", "Crop: smallest kept area", 0.05, 1.0, 0.05)
                if name == "blur":
                    form.slider("augment.blur_sigma", "Blur: largest sigma (px)", 0.1, 5.0, 0.1)
        form.problems("augment")
    with grid:
        head, button = st.columns([3, 1])
        head.markdown("**Preview**: training samples with their labels, before and after augmentation")
        button.button("Re-draw", key="setup.redraw", on_click=sf.on_redraw, icon=":material/casino:")
        if any(e.field.startswith(("data.", "augment.")) for e in errors):
            st.info("The preview appears once the data and augmentation settings above are valid.")
        else:
            # only what the pictures depend on: not the split sizes, nor anything about training
            data = dataclasses.replace(cfg.data, train_size=PREVIEW_SAMPLES, val_size=1, test_size=1)
            key = dataclasses.replace(ExperimentConfig(), data=data, tasks=cfg.tasks, augment=cfg.augment,
                                      seed=cfg.seed).to_json()
            try:
                with st.spinner("Drawing samples…"):
                    pairs = _preview(key, PREVIEW_SAMPLES, ss.get("setup.preview_draw", 0))
            except (MTLError, ValueError) as e:
                st.warning(f"No preview: {e}")
            else:
                cols = st.columns(4)
                for i, (original, augmented) in enumerate(pairs):
                    cols[(2 * i) % 4].image(original, caption=f"#{i} original", width="stretch")
                    cols[(2 * i + 1) % 4].image(augmented, caption=f"#{i} augmented", width="stretch")

with _where("optim", st.container()), st.container(border=True):
    st.subheader("Optimisation")
    a, b, c, d = st.columns(4)
    with a:
        form.select("optim.optimizer", "Optimiser", list(OPTIMIZERS))
        form.number("seed", "Seed", help="The same seed and settings give the same run")
    with b:
        form.number("optim.lr", "Learning rate", fmt="%g", step=0.0005)
        form.select("device", "Device", list(DEVICES), help="auto: the GPU when there is one, else the CPU")
    with c:
        form.number("optim.batch_size", "Batch size", step=8)
    with d:
        form.number("optim.steps", "Training steps", step=100)
    with st.expander("More settings", expanded=any(e.field.startswith(ADVANCED) for e in errors)):
        a, b, c, d = st.columns(4)
        with a:
            form.select("optim.scheduler", "Learning-rate schedule", list(SCHEDULERS),
                        help="cosine: down to 5% by the end; step: times gamma every step size (StepLR); constant")
            form.number("optim.warmup_steps", "Warm-up steps", step=10)
            form.number("optim.step_size", "Step schedule: steps between decays (0 = none)", step=100)
            form.number("optim.gamma", "Step schedule: factor at each decay", fmt="%g", step=0.1)
        with b:
            form.number("optim.weight_decay", "Weight decay", fmt="%g", step=0.0001)
            form.number("optim.momentum", "Momentum (SGD)", step=0.05)
            form.number("optim.grad_clip", "Gradient clipping (0 = off)", step=0.5)
        with c:
            form.select("precision", "Precision", list(PRECISIONS))
            form.number("eval_every", "Evaluate every (steps)", step=50)
            form.number("gradstats_every", "Gradient statistics every (steps, 0 = off)", step=10)
        with d:
            form.number("checkpoint_every", "Checkpoint every (steps, 0 = off)", step=100)
            form.number("time_limit", "Time limit (seconds, 0 = none)", step=60.0)
    form.problems("optim")

with st.container(border=True):
    st.subheader("Start")
    st.text_input("Run name", key=K + "name", persist_state=KEEP, placeholder="optional: a name to find this run by")
    form.problems("name")
    for e in form.unshown():  # anything no widget above showed
        st.error(f"{e.field}: {e.message}", icon=":material/error:")
    if errors:
        fields = ", ".join(dict.fromkeys(e.field for e in errors))
        st.warning(f"Fix {len(errors)} problem{'s' if len(errors) > 1 else ''} to start: {fields}.")
    locked = why_not("run.start")  # shared mode, a viewer: the owner starts runs
    if st.button("Start training", type="primary", disabled=bool(errors or locked), key="setup.start",
                 icon=":material/play_arrow:", help=locked):
        try:
            with st.spinner("Starting the run…"):
                run_id = manager().start(cfg, name=cfg.name)
        except MTLError as e:
            st.error(f"The run could not start: {e}")
        else:
            open_run(run_id)

with _where("study", st.container()), st.expander("Start as a study: many runs, with seeds and baselines",
                                                  icon=":material/science:"):
    study_section(cfg, errors, methods, titles)
if not errors and st.query_params.get("config") != (token := cfg.to_link()):
    st.query_params["config"] = token  # the URL holds the setup: copy it to share this exact setup
    cs.wrote_link(ss, token)
