"""Compress & export: make a trained run's model smaller or faster and see what it costs, then
export it to ONNX or TorchScript, checked against PyTorch, and download the file.

Compression is int8 quantization (static, calibrated on training images, or dynamic) or global
magnitude pruning (Han et al., "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015: zeroed weights, so no faster); structured channel pruning (Fang et al.,
"DepGraph: Towards Any Structural Pruning", CVPR 2023) removes whole channels, then fine-tunes; ``mtl_core.deploy.compress`` measures size, CPU latency and every task's primary
metric before and after, and keeps the report beside the run, so earlier results stay listed here.
"""
from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from mtl_core.deploy.compress import CompressionReport, compress_run, compressed_reports
from mtl_core.deploy.export import export_run
from mtl_core.deploy.structured import prune_run, structured_reports
from mtl_core.errors import MTLError
from mtl_core.store.status import RunStatus
from ui.entry import through_app
from ui.importance_view import section as importance_section
from ui.metrics import format_bytes, report_table
from ui.pruning import pruning_table
from ui.roles import refused, view_only_caption, why_not
from ui.run_files import run_files
from ui.sidebar import model_checkpoint, run_picker
from ui.state import manager

through_app()  # a link opened first on a fresh server: rerun through app.py

USABLE = (RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.INTERRUPTED)  # ended runs: their last checkpoint no longer changes
METHODS = {"int8": "int8, static (calibrated)", "int8-dynamic": "int8, dynamic",
           "prune": "magnitude pruning (zeros, not faster)"}
FORMATS = {"onnx": "ONNX", "torchscript": "TorchScript"}
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def _file_bytes(path: str):
    """A download's data, read when the button is clicked, not on every rerun."""
    return lambda: Path(path).read_bytes()


def _report_rows(saved: dict) -> list[dict]:
    """A saved report (JSON) back as table rows; a NaN it stored as null stays NaN."""
    fields = {f.name for f in dataclasses.fields(CompressionReport)}
    values = {k: (math.nan if v is None and k.startswith("latency") else v) for k, v in saved.items() if k in fields}
    return CompressionReport(**values).rows()


st.title("Compress & export")
store = manager().store
run_id = run_picker("models", statuses=USABLE)
run = store.get_run(run_id) if run_id else None
if run is None:
    st.info("No finished run yet. Train one on **Setup** (or `python -m mtl_core train`); it can be compressed "
            "and exported here once it has ended.")
    st.stop()
ck = model_checkpoint(store, run)
if ck is None:
    st.info(f"Run **{html.escape(run['name'])}** has no checkpoint to compress or export.")
    st.stop()
cfg = run["config"]
st.caption(f"Model: **{html.escape(run['name'])}** ({run['status']}) · checkpoint: {ck['chosen']} · "
           f"{', '.join(cfg.get('tasks', []))} · {cfg.get('model', {}).get('architecture', '?')} · "
           f"{cfg.get('data', {}).get('image_size', '?')} px")
run_dir = store.run_dir(run_id)
files = run_files(run_dir)
if files:  # what the run keeps, Inspect's outputs included (viewers may have had them computed): all freed with it
    st.caption(f"On disk: {format_bytes(sum(files.values()))} in `{run_dir}` ("
               + ", ".join(f"{kind} {format_bytes(n)}" for kind, n in files.items()) + "); deleted with the run.")
locked = why_not("model.compress")  # shared mode, a viewer: these write into the run's folder
view_only_caption("compresses, prunes and exports models; you can read the results they wrote")

# -- which features each task uses (per-task importance of the backbone's channels) ----------------
importance_section(ck, run_id)

# -- compress ------------------------------------------------------------------------------------
st.subheader("Compress")
c1, c2, c3 = st.columns([2, 2, 1])
method = c1.radio("Method", list(METHODS), format_func=METHODS.get, key="models_method", horizontal=True,
                  help="Static int8 quantizes weights and activations (calibrated on training images); dynamic "
                       "quantizes the weights of linear layers only; magnitude pruning zeroes the smallest weights "
                       "but keeps every shape, so the model is not faster and its file no smaller (only gzip "
                       "shrinks): for that, use structured pruning below.")
amount = c2.slider("Pruning amount", 0.05, 0.95, 0.5, 0.05, key="models_amount", disabled=method != "prune",
                   help="The fraction of all conv and linear weights set to zero, smallest magnitude first "
                        "across the whole network. Zeros are still stored and multiplied: not faster.")
limit = int(c3.number_input("Validation images", 16, 10_000, 256, 16, key="models_limit",
                            help="Both models are scored on the first this many validation images."))
if st.button("Compress", type="primary", key="models_compress", icon=":material/compress:", disabled=bool(locked), help=locked) \
        and not refused("model.compress"):
    label = METHODS[method] + (f" ({amount:.0%})" if method == "prune" else "")
    with st.status(f"Compressing with {label} ...", expanded=True) as status:
        st.write(f"Scoring both models on {limit} validation images and timing them on one CPU thread.")
        try:
            compress_run(store, run_id, method, amount, eval_limit=limit)
            status.update(label=f"Compressed with {label}", state="complete", expanded=False)
        except (MTLError, RuntimeError, ValueError) as e:  # a model the quantizer cannot handle says so here
            status.update(label="Compression failed", state="error")
            st.error(f"Could not compress with {label}: {e}")

reports = compressed_reports(run_dir)
if not reports:
    st.caption("No compressed model yet: pick a method and press **Compress**.")
for i, saved in enumerate(reports):
    title = saved.get("method") or saved.get("requested", "?")
    with st.expander(f"{title} · {saved.get('eval_images', '?')} validation images", expanded=i == 0):
        if saved.get("note"):
            st.caption(saved["note"])
        st.dataframe(report_table(_report_rows(saved)), hide_index=True, width="stretch",
                     key=f"models_report_{i}_{saved.get('requested')}")
        model_path = saved.get("files", {}).get("model")
        if model_path and Path(model_path).is_file():
            st.download_button(f"Download the compressed model ({format_bytes(Path(model_path).stat().st_size)})",
                               _file_bytes(model_path), f"{run_id}_{Path(model_path).name}",
                               "application/octet-stream", key=f"models_dl_compressed_{i}", on_click="ignore",
                               icon=":material/download:")

# -- structured pruning ----------------------------------------------------------------------------
st.subheader("Structured pruning (channels)")
st.caption("Removes whole channels of every layer outside the task heads (the shared backbone), with the "
           "weights that read them, so the model has fewer parameters and multiply-adds and runs faster; then "
           "fine-tunes it on the run's training data and quantizes it to int8. Multiply-adds are counted by "
           "torch's FlopCounterMode; latency is the median on this machine's CPU.")
c1, c2, c3 = st.columns([2, 1, 1])
ch_amount = c1.slider("Channels removed", 0.1, 0.9, 0.5, 0.05, key="models_ch_amount",
                      help="The share of every backbone layer's channels removed (the same share in each layer).")
ch_steps = int(c2.number_input("Fine-tuning steps", 0, 100_000, 600, 50, key="models_ch_steps",
                               help="Training steps after pruning, on the run's training split in its seeded order, at the run's own rate; 600 recovered the demo's metrics after halving its channels."))
ch_importance = c3.selectbox("Importance", ["magnitude", "taylor"], key="models_ch_importance",
                             help="Which channels go first: the smallest by weight norm, or by |weight × gradient| "
                                  "on a training batch.")
if st.button("Prune channels", key="models_ch_prune", icon=":material/content_cut:", disabled=bool(locked), help=locked) \
        and not refused("model.compress"):
    with st.status(f"Removing {ch_amount:.0%} of the channels ...", expanded=True) as status:
        st.write(f"Pruning, fine-tuning for {ch_steps} steps, quantizing, then scoring the four models on "
                 f"{limit} validation images.")
        try:
            prune_run(store, run_id, ch_amount, ch_steps, importance=ch_importance, eval_limit=limit)
            status.update(label=f"Pruned {ch_amount:.0%} of the channels", state="complete", expanded=False)
        except (MTLError, RuntimeError, ValueError) as e:  # e.g. an architecture channel pruning cannot follow
            status.update(label="Channel pruning failed", state="error")
            st.error(f"Could not prune channels: {e}")
for i, saved in enumerate(structured_reports(run_dir)):
    spec = saved.get("spec", {})
    with st.expander(f"{spec.get('amount', 0):.0%} of the channels removed · {spec.get('finetune_steps', 0)} "
                     f"fine-tuning steps · {saved.get('eval_images', '?')} validation images", expanded=i == 0):
        if saved.get("int8_note"):
            st.caption(f"int8: {saved['int8_note']}")
        st.dataframe(pruning_table(saved.get("rows", []), saved.get("higher_is_better")), hide_index=True,
                     width="stretch", key=f"models_ch_table_{i}")

# -- export ----------------------------------------------------------------------------------------
st.subheader("Export")
pruned = sorted((run_dir / "compressed").glob("*.pt"))
sources = {ck["path"]: f"the run's checkpoint (step {ck['step']})",
           **{str(p): (f"channel-pruned model {p.stem.removeprefix('channels-')}%" if p.stem.startswith("channels-")
                       else f"pruned model {p.stem.removeprefix('pruned-')}%") for p in pruned}}
c1, c2 = st.columns(2)
fmt = c1.radio("Format", list(FORMATS), format_func=FORMATS.get, key="models_format", horizontal=True,
               help="ONNX runs in ONNX Runtime and most inference servers; TorchScript loads with torch.jit.load. "
                    "Both take (B, 3, S, S) images in [0, 1] and give each task's raw outputs.")
source = c2.selectbox("Model", list(sources), format_func=sources.get, key="models_source",
                      help="int8 models are already TorchScript files (download them above).")
if st.button("Export", type="primary", key="models_export", icon=":material/output:", disabled=bool(locked), help=locked) \
        and not refused("model.compress"):
    out = run_dir / "export" / f"{Path(source).stem}{SUFFIX[fmt]}"
    with st.status(f"Exporting to {FORMATS[fmt]} ...", expanded=True) as status:
        st.write("Writing the file, then running it on validation images beside PyTorch.")
        try:
            result = export_run(store, run_id, fmt, out, checkpoint=source)
            st.session_state[f"models_exported_{run_id}"] = result.to_dict()
            status.update(label=f"Exported to {FORMATS[fmt]}", state="complete", expanded=False)
        except (MTLError, RuntimeError, ValueError, ImportError) as e:
            status.update(label="Export failed", state="error")
            st.error(f"Could not export to {FORMATS[fmt]}: {e}")

done = st.session_state.get(f"models_exported_{run_id}")
if done and Path(done["path"]).is_file():
    worst = max(done["max_abs_diff"].values(), default=float("nan"))
    where = f"{FORMATS.get(done['format'], done['format'])} · {format_bytes(done['bytes'])} · {done['exporter']}"
    if done["ok"] is None:
        st.warning(f"{where}: written, but not checked ({done['checked_with']}).")
    elif done["ok"]:
        st.success(f"{where}: matches PyTorch on {done['samples']} images, max abs diff {worst:.2e} "
                   f"(tolerance {done['tolerance']:g}, {done['checked_with']}).")
    else:
        st.error(f"{where}: does NOT match PyTorch on {done['samples']} images, max abs diff {worst:.2e} "
                 f"(tolerance {done['tolerance']:g}); do not deploy this file.")
    st.dataframe(pd.DataFrame([{"output": k, "max abs diff": v} for k, v in done["max_abs_diff"].items()]),
                 hide_index=True, key="models_parity",
                 column_config={"max abs diff": st.column_config.NumberColumn(format="%.2e")})
    st.download_button(f"Download {Path(done['path']).name}", _file_bytes(done["path"]),
                       f"{run_id}_{Path(done['path']).name}", "application/octet-stream",
                       key="models_dl_export", on_click="ignore", icon=":material/download:")
