"""Predict: upload images (or try the sample images in ``assets/samples/``, or pick dataset
samples), choose a trained run (or an ensemble of several, their outputs fused), and see every
task's output drawn on each image, with ground truth beside dataset samples, an MTAN run's
per-task attention maps, a mixture-of-experts run's gate values (PAD-Net's distillation gates), and
a PNG download.

UI only: decoding, inference and drawing go through ``mtl_core`` (no torch here). The model is
cached per (checkpoint path, modification time), so a running run's newer checkpoint is picked up.
"""
from __future__ import annotations

import hashlib
import html
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from mtl_core.config import ExperimentConfig
from mtl_core.deploy.structured import pruned_models
from mtl_core.errors import MTLError
from mtl_core.inference.ensemble import BOX_FUSIONS, CLASS_FUSIONS, Ensemble
from mtl_core.inference.images import decode_image
from mtl_core.inference.predictor import Predictor
from mtl_core.inference.samples import dataset_sample, dataset_size
from mtl_core.store.status import WITH_CHECKPOINTS, RunStatus
from mtl_core.tasks import task_meta
from mtl_core.views.attention import attention_overlays, has_attention
from mtl_core.views.gates import distillation_values, gate_values, has_distillation, has_gates
from mtl_core.views.render import render
from ui.access import shared_mode
from ui.charts import DRAWN_AT_FIRST, MANY_TASKS
from ui.entry import through_app
from ui.gate_chart import gate_figure
from ui.roles import upload_limit_mb
from ui.shared import SharedLRU, shared_lru
from ui.sidebar import model_checkpoint, run_label, run_picker
from ui.state import manager, select_run, selected_run

through_app()  # a link opened first on a fresh server: rerun through app.py

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif"]
KEEP_PREDICTIONS = 24  # per session: re-drawing after a slider change must not re-run the model
SHARED_UPLOADS = 8  # images per session at a time, in shared mode
SHARED_KEEP = 96  # the sample and dataset images' results, shared by every session
_MISSING = object()
MAX_SAMPLES = 12
MAX_MEMBERS = 6  # an ensemble's members are loaded side by side: a few, not dozens
CANDIDATES = 200  # finished runs offered for an ensemble: the newest (and those picked), however many there are
LOOK_FOR_MODEL = 50  # the newest runs looked through for one with a model to use
CLASS_FUSION_LABELS = {"average": "average probabilities", "vote": "weighted vote"}
BOX_FUSION_LABELS = {"wbf": "weighted boxes fusion", "nms": "NMS"}
SOURCES = {"upload": "Upload", "samples": "Sample images", "dataset": "Dataset samples"}
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "samples"  # rendered scenes, made by assets/make_samples.py


@dataclass(frozen=True)
class Model:
    """What predicts: one run's model or an ensemble, and what identifies its weights (the caches' key)."""

    predictor: Predictor | Ensemble
    key: tuple


@dataclass(frozen=True)
class Look:
    """How every image is drawn: the tasks shown, the overlay's opacity, the boxes' score threshold,
    dense maps beside the image or blended into it; MTAN's attention maps shown or not, each on its
    own range (``stretch``) or on one 0 to 1 scale; a gated model's gate values shown or not."""

    show: tuple[tuple[str, bool], ...]  # (task, shown) in the model's task order
    opacity: float
    threshold: float
    beside: bool
    attention: bool = False
    stretch: bool = True
    gates: bool = False

    @property
    def shown(self) -> dict[str, bool]:
        return dict(self.show)

    @property
    def overlay_key(self) -> tuple:
        """What an overlay depends on (the attention maps are drawn apart)."""
        return (tuple(sorted(self.show)), self.opacity, self.threshold, self.beside)


@st.cache_resource(max_entries=4, show_spinner="Loading the model ...")
def load_predictor(path: str, mtime: float) -> Predictor:
    """One model per checkpoint file version, shared by every session."""
    return Predictor(path)


def _lru(name: str, item_key: str) -> SharedLRU:
    """Where an image's results are kept: a person's uploads in their own session; the sample and
    dataset images, the same for every viewer, in one memo that all sessions share."""
    if item_key.startswith("upload"):
        return st.session_state.setdefault(name, SharedLRU(KEEP_PREDICTIONS))
    return shared_lru(name, SHARED_KEEP)


def _memo(cache: SharedLRU, key: Any, compute: Callable[[], Any]) -> Any:
    hit = cache.get(key, _MISSING)
    return cache.put(key, compute()) if hit is _MISSING else hit


def _predicted(model: Model, item_key: str, image) -> tuple[dict, float]:
    return _memo(_lru("predict_preds", item_key), (model.key, item_key), lambda: model.predictor.predict(image))


def _first_usable(store: Any) -> dict | None:
    """The newest run that has a model to use (of the newest few), not merely the newest run."""
    return next((r for r in store.find_runs(statuses=WITH_CHECKPOINTS, limit=LOOK_FOR_MODEL, counts=False).rows
                 if model_checkpoint(store, r)), None)


def _load(ck: dict) -> Model:
    path = ck["path"]
    mtime = os.path.getmtime(path)
    return Model(load_predictor(path, mtime), (path, mtime))


def _ensemble(store: Any, run: dict) -> Model:
    """The members, their weights and the fusion options picked here; stops the page until they make an ensemble."""
    rows = store.find_runs(statuses=[RunStatus.FINISHED], limit=CANDIDATES, config=True, counts=False).rows
    kept = [i for i in st.session_state.get("predict_ens_runs") or [] if i not in {r["id"] for r in rows}]
    if kept:  # picked before, older than the newest CANDIDATES
        rows += store.find_runs(statuses=[RunStatus.FINISHED], ids=kept, config=True, counts=False).rows
    finished = [r for r in rows if model_checkpoint(store, r)]
    by_id = {r["id"]: r for r in finished}
    if "predict_ens_runs" not in st.session_state:  # start from the run in the sidebar and others on its tasks
        tasks = run["config"].get("tasks", [])
        st.session_state["predict_ens_runs"] = [r["id"] for r in finished if r["config"].get("tasks", []) == tasks][:3]
    st.session_state["predict_ens_runs"] = [i for i in st.session_state["predict_ens_runs"] if i in by_id]
    picks = st.multiselect("Runs in the ensemble", list(by_id), key="predict_ens_runs", max_selections=MAX_MEMBERS,
                           format_func=lambda i: f"{run_label(by_id[i])} · {', '.join(by_id[i]['config'].get('tasks', []))}",
                           help="Finished runs trained on the same tasks and dataset; they may differ in "
                                "architecture, weighting and input size.")
    if len(picks) < 2:
        st.info("Pick two or more finished runs trained on the same tasks to fuse their predictions.")
        st.stop()
    cols = st.columns(min(len(picks), 3))
    weights = [cols[i % len(cols)].number_input(f"Weight of {by_id[rid]['name']}", 0.0, 100.0, 1.0, 0.5,
                                                key=f"predict_ens_w_{rid}") for i, rid in enumerate(picks)]
    c1, c2 = st.columns(2)
    class_fusion = c1.radio("Classes", CLASS_FUSIONS, horizontal=True, key="predict_ens_class",
                            format_func=CLASS_FUSION_LABELS.get)
    box_fusion = BOX_FUSIONS[0]
    if any(m["fusion"] == "boxes" for m in task_meta(by_id[picks[0]]["config"].get("tasks", []),
                                                   by_id[picks[0]]["config"].get("task_specs")).values()):
        box_fusion = c2.radio("Boxes", BOX_FUSIONS, horizontal=True, key="predict_ens_boxes",
                              format_func=BOX_FUSION_LABELS.get,
                              help="Weighted boxes fusion averages overlapping boxes of the members "
                                   "(Solovyev et al., 2021); NMS keeps the best of each group.")
    try:
        loaded = [_load(model_checkpoint(store, by_id[rid])) for rid in picks]
        ensemble = Ensemble([m.predictor for m in loaded], weights, [by_id[rid]["name"] for rid in picks],
                         class_fusion=class_fusion, box_fusion=box_fusion)
    except (MTLError, OSError) as e:
        st.error(f"These runs cannot be fused: {e}")
        st.stop()
    key = ("ensemble", tuple(m.key for m in loaded), tuple(weights), class_fusion, box_fusion)
    total = sum(weights)
    st.caption(f"Model: **{html.escape(ensemble.description)}** · "
               + ", ".join(f"{html.escape(by_id[rid]['name'])} {w / total:.0%}" for rid, w in zip(picks, weights, strict=True))
               + f" · tasks: {', '.join(ensemble.tasks)}")
    return Model(ensemble, key)


def _one_run(store: Any, run: dict) -> Model:
    """The run's model (its checkpoint to use); stops the page, offering another run, when it has none yet."""
    ck = model_checkpoint(store, run)
    if ck is None:
        st.info(f"Run **{html.escape(run['name'])}** has no checkpoint yet; the first one is written at step "
                f"{run['config'].get('checkpoint_every', '?')}.")
        other = _first_usable(store)
        if other is not None and st.button(f"Use {other['name']} ({other['status']}) instead", key="predict_use_other"):
            select_run(other["id"])
            st.rerun()
        st.stop()
    pruned = pruned_models(store.run_dir(run["id"]))
    variant = ""
    if pruned:  # smaller models made on Compress & export
        variant = st.selectbox("Model", ["", *pruned], key="predict_variant",
                               format_func=lambda v: v or f"as trained (step {ck['step']})",
                               help="Channel-pruned models of this run, made on Compress & export")
        if variant in pruned:
            ck = {**ck, "path": pruned[variant], "kind": variant, "chosen": f"{variant} (of the {ck['chosen']} model)"}
    try:
        model = _load(ck)
    except (MTLError, OSError) as e:
        st.error(f"Could not load the checkpoint {ck['path']}: {e}")
        st.stop()
    st.caption(f"Model: **{html.escape(run['name'])}** ({run['status']}), checkpoint: {ck['chosen']} "
               f"· tasks: {', '.join(model.predictor.tasks)} · input {model.predictor.input_label}"
               + (f" · {model.predictor.parameters:,} parameters" if variant else ""))
    return model


def _attention_row(model: Model, look: Look, item_key: str, image) -> None:
    """MTAN's attention of every task on this image, a small grid of heat maps."""
    predictor, stretch, show = model.predictor, look.stretch, look.shown
    cache = _lru("predict_attention_maps", item_key)
    key = (model.key, item_key, stretch)
    maps = _memo(cache, key, lambda: attention_overlays(predictor, image, stretch=stretch))
    st.markdown("**Attention** (last stage, " + ("each map on its own range" if stretch else "scale 0 to 1")
                + "; bright = attended)")
    shown_maps = [(t, m) for t, m in maps.items() if show.get(t, True)]
    for col, (t, m) in zip(st.columns(max(4, len(shown_maps))), shown_maps, strict=False):
        title = getattr(predictor.tasks[t], "title", "") or t
        col.image(m.image, caption=f"{title}: {m.low:.2f} to {m.high:.2f}", width="stretch")


def _gate_chart(model: Model, item_key: str, image) -> None:
    """Each task's gate on this image: its weight per expert (or, for PAD-Net, per other task's message)."""
    predictor = model.predictor
    distilled = not has_gates(predictor)
    cache = _lru("predict_gate_values", item_key)
    key = (model.key, item_key)
    values = _memo(cache, key, lambda: (distillation_values if distilled else gate_values)(predictor, image))
    titles = {t: getattr(predictor.tasks[t], "title", "") or t for t in values}
    fig = (gate_figure(values, titles, "Distillation gates (mean attention on each other task's message)",
                       "mean gate", "from ") if distilled else
           gate_figure(values, titles, "Gates (each task's weight on each expert; they sum to 1)"))
    st.plotly_chart(fig, key=f"predict_gates_{item_key}", width="stretch", config={"displayModeBar": False})


def _show_result(model: Model, look: Look, title: str, item_key: str, image, truth: dict | None = None) -> None:
    """One image: prediction overlay (+ depth beside) (+ ground truth), summary, download."""
    predictor, show = model.predictor, look.shown
    try:
        preds, seconds = _predicted(model, item_key, image)
    except Exception as e:  # one bad image must not take the others down
        st.error(f"{title}: prediction failed ({type(e).__name__}: {e})")
        return
    drawn_cache = _lru("predict_drawn", item_key)
    key = (model.key, item_key, look.overlay_key)
    out = _memo(drawn_cache, key, lambda: render(predictor, image, preds, show, look.opacity, look.threshold,
                                                 look.beside, seconds))
    h, w = image.shape[-2:]
    with st.container(border=True):
        st.markdown(f"**{html.escape(title)}** · {w}×{h} px · inference {seconds * 1000:.0f} ms")
        panels = [("Prediction", out.overlay), *((predictor.tasks[t].display.beside_caption, m) for t, m in out.beside.items())]
        if truth is not None:
            gt = render(predictor, image, truth, show, look.opacity, 0.0, look.beside)
            panels.append(("Ground truth", gt.overlay))
            panels += [(f"Ground-truth {(predictor.tasks[t].title or t).lower()}", m) for t, m in gt.beside.items()]
        for col, (caption, img) in zip(st.columns(len(panels)), panels, strict=False):
            col.image(img, caption=caption, width="stretch", output_format="PNG")  # sharp labels
        if look.attention:
            _attention_row(model, look, item_key, image)
        if look.gates:
            _gate_chart(model, item_key, image)
        if out.summary:
            st.markdown("  \n".join(html.escape(line) for line in out.summary))
        for t, entries in out.legends.items():
            chips = " ".join(f'<span style="background:{c};color:#fff;padding:1px 6px;border-radius:4px;'
                             f'font-size:0.8em;text-shadow:0 0 2px #000">{html.escape(n)}</span>' for n, c in entries)
            st.markdown(f"{html.escape(predictor.tasks[t].title or t)}: {chips}", unsafe_allow_html=True)
        stem = os.path.splitext(os.path.basename(title))[0] or "image"
        st.download_button("Download overlay (PNG)", out.png, f"{stem}_overlay.png", "image/png",
                           key=f"predict_dl_{item_key}", icon=":material/download:", on_click="ignore")


def _show_files(model: Model, look: Look, files: list[tuple[str, bytes]], source: str) -> None:
    """Image files (uploaded, or the sample images): decoded, predicted and drawn one by one."""
    for i, (name, data) in enumerate(files):
        digest = hashlib.sha1(data).hexdigest()[:16]
        try:
            image = decode_image(data, name)  # (3, H, W) uint8
        except MTLError as e:  # the message names the file and says why
            st.error(str(e))
            continue
        _show_result(model, look, name, f"{source}-{i}-{digest}", image)


st.title("Predict")
store = manager().store
if selected_run() is None and "run_picker.predict" not in st.session_state:
    usable = _first_usable(store)  # nothing chosen yet: start on a run that has a model to use
    if usable is not None:
        st.session_state["run_picker.predict"] = usable["id"]
run_id = run_picker("predict", statuses=WITH_CHECKPOINTS)
run = store.get_run(run_id) if run_id else None
if run is None:
    st.info("No trained run yet. Train one on **Setup** (or `python -m mtl_core train`); its checkpoints appear here.")
    st.stop()
mode = st.radio("Model", ["run", "ensemble"], horizontal=True, key="predict_mode",
                format_func={"run": "One run", "ensemble": "Ensemble of runs"}.get,
                help="An ensemble fuses the outputs of several finished runs trained on the same tasks.")

model = _ensemble(store, run) if mode == "ensemble" else _one_run(store, run)
predictor = model.predictor

# -- what to show ------------------------------------------------------------------------------
tasks = list(predictor.tasks)
cols = st.columns([3, 2, 2])
if len(tasks) <= MANY_TASKS:
    shown = cols[0].pills("Show", tasks, selection_mode="multi", default=tasks, key="predict_show",
                          format_func=lambda t: getattr(predictor.tasks[t], "title", "") or t) or []
else:  # forty attributes drawn at once would cover the photo: a few, chosen per task
    shown = cols[0].multiselect(f"Show ({len(tasks)} tasks: choose which to draw)", tasks, default=tasks[:DRAWN_AT_FIRST],
                                key="predict_show_many", format_func=lambda t: getattr(predictor.tasks[t], "title", "") or t)
opacity = cols[1].slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="predict_opacity")
threshold = cols[2].slider("Score threshold", 0.0, 1.0, 0.3, 0.05, key="predict_threshold",
                           help="Boxes scoring below this are hidden.")
c1, c2 = st.columns([3, 4])
source = c1.radio("Images", list(SOURCES), horizontal=True, key="predict_source", format_func=SOURCES.get,
                  help="Sample images: scenes like those the built-in dataset trains on, for a first look "
                       "without an image of your own.")
maps = [t for t in tasks if predictor.tasks[t].display.beside_caption]  # dense maps that can be shown beside (depth)
beside = False
if maps:
    beside = c2.radio(", ".join(predictor.tasks[t].title or t for t in maps), ["beside", "blended"], horizontal=True,
                      key="predict_depth_mode",
                      format_func={"beside": "colour map beside", "blended": "blended into the image"}.get) == "beside"
show = {t: t in shown for t in tasks}
attention = mode == "run" and has_attention(predictor)
stretch = True
if attention:
    c1, c2 = st.columns([3, 4])
    attention = c1.toggle("Attention maps (MTAN)", value=True, key="predict_attention",
                          help="Where each task's attention module looks in the shared features at the last "
                               "stage (Liu, Johns and Davison, 2019); bright = attended.")
    stretch = c2.toggle("Colour each map from its own minimum to maximum", value=True, key="predict_attention_stretch",
                        disabled=not attention,
                        help="Off: one 0 to 1 scale for every map, so maps can be compared; a barely trained "
                             "run's maps sit near 0.5 and look flat.")

gated = mode == "run" and (has_gates(predictor) or has_distillation(predictor))
if gated:
    gated = st.toggle("Gate values", value=True, key="predict_gates",
                      help="How much of each expert each task's gate takes for this image (mixture of experts), "
                           "or how much of each other task's message each task takes in (PAD-Net).")

look = Look(tuple(show.items()), opacity, threshold, beside, attention, stretch, gated)

if source == "upload":
    # shared mode: uploads stay in the uploader's session; a smaller file limit and a few images per
    # session keep one viewer's upload from taking the shared server's memory and time from the others
    shared, limit = shared_mode(), upload_limit_mb()  # the limit: every uploader's on a shared dashboard
    files = st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True, key="predict_upload",
                             max_upload_size=limit,
                             help="png, jpg, webp, bmp, tiff or gif; any size (they are resized for the model)."
                             + (f" Shared dashboard: up to {limit} MB each, {SHARED_UPLOADS} at a time; "
                                "only you see your images." if shared else ""))
    if not files:
        st.info("Upload one or more images to see every task's prediction on them, or choose **Sample images** "
                "above.")
    elif shared and len(files) > SHARED_UPLOADS:
        st.warning(f"Showing the first {SHARED_UPLOADS} of your {len(files)} images: on a shared dashboard each "
                   f"person predicts at most {SHARED_UPLOADS} at a time. Remove some to see the others.")
        files = files[:SHARED_UPLOADS]
    _show_files(model, look, [(f.name, f.getvalue()) for f in files or []], "upload")
elif source == "samples":
    samples = sorted(SAMPLES_DIR.glob("*.png"))
    if not samples:
        st.info(f"No sample images in {SAMPLES_DIR}: `python assets/make_samples.py` renders them.")
    else:
        st.caption(f"{len(samples)} scenes from the built-in dataset's test split, kept in assets/samples/.")
    _show_files(model, look, [(p.name, p.read_bytes()) for p in samples], "sample")
else:
    config = predictor.config if isinstance(predictor.config, ExperimentConfig) else ExperimentConfig.from_dict(run["config"])
    c1, c2, c3 = st.columns(3)
    split = c1.selectbox("Split", ["val", "test"], key="predict_split")
    try:
        n = dataset_size(config, split)
    except MTLError as e:
        st.error(f"The run's dataset is not available here: {e}")
        st.stop()
    start = c2.number_input("First sample", 0, max(0, n - 1), 0, key="predict_first")
    count = c3.slider("How many", 1, MAX_SAMPLES, 4, key="predict_count")
    for idx in range(int(start), min(n, int(start) + count)):
        image, truth = dataset_sample(config, split, idx, predictor.tasks)
        _show_result(model, look, f"{split} sample {idx}", f"{split}-{idx}", image, truth)
