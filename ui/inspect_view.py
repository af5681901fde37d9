"""The Inspect page's pieces: the models and per-sample outputs held for every session, the
error browser's filters and thumbnail grid, one sample large, and one run's column of the
run-against-run view.

Streamlit only; what is drawn comes from ``mtl_core.views.inspection`` as numpy images.
"""
from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.inference.predictor import Predictor
from mtl_core.inspection.outputs import cache_path, load, split_outputs
from mtl_core.inspection.table import Condition
from mtl_core.measures.types import COUNT, FLAG, FRACTION, VALUE
from mtl_core.views import inspection as views
from ui.inspect_charts import top_figure
from ui.roles import inspect_build, viewer

ss = st.session_state
COLUMNS = 6


@st.cache_resource(max_entries=6, show_spinner="Loading the model …")
def predictor(path: str, mtime: float) -> Predictor:
    """One model per checkpoint file version, shared by every session."""
    return Predictor(path)


class NotKept(MTLError):
    """No per-sample outputs of this checkpoint and split are kept yet (and none were to be computed)."""


@st.cache_resource(max_entries=6, show_spinner="Opening the split's per-sample outputs (the first time, every "
                                              "sample goes through the model once; they are kept beside the checkpoint) …")
def outputs(path: str, mtime: float, split: str, _compute: bool = True) -> Any:
    """A checkpoint's per-sample outputs on ``split``: read from beside the checkpoint, or (when
    ``_compute``) computed once and saved there; :class:`NotKept` otherwise (not cached, so the
    outputs someone computes later are found). ``_compute`` is not part of the cache's key: the
    outputs held for one session serve every session."""
    if not _compute:
        p = predictor(path, mtime)
        found = load(cache_path(path, split), path, p.config, p.tasks, None)
        if found is None:
            raise NotKept(f"no {split} outputs kept beside {path}")
        return found
    return split_outputs(path, split, predictor=predictor(path, mtime))


def session_outputs(path: str, mtime: float, split: str, what: str) -> Any:
    """The outputs for this session: the owner's (and anyone's outside shared mode) are computed
    when nobody did yet; a viewer's only within the classroom's bound (``ui.roles.inspect_build``:
    the owner's leave and a free place, else :class:`ui.access.AccessError` saying so, ``what``
    naming the outputs)."""
    if not viewer():
        return outputs(path, mtime, split)
    try:
        return outputs(path, mtime, split, _compute=False)
    except NotKept:
        with inspect_build(what):
            return outputs(path, mtime, split)


def kept_file(path: str, split: str) -> tuple[Path, int] | None:
    """Where a checkpoint's outputs on ``split`` are kept, and their size; None before they are."""
    file = cache_path(path, split)
    try:
        return file, file.stat().st_size
    except OSError:
        return None


def checkpoint_key(ck: Mapping[str, Any]) -> tuple[str, float]:
    return ck["path"], os.path.getmtime(ck["path"])


@st.cache_data(max_entries=4000, show_spinner=False)
def thumbnail(path: str, mtime: float, split: str, j: int, shown: tuple[tuple[str, bool], ...], threshold: float,
              _out: Any):
    """Sample ``j`` drawn small; ``_out``: the outputs this session was given (not part of the key)."""
    return views.thumbnail(_out, j, dict(shown), threshold)


def filters(tasks: Mapping[str, Any], prefix: str = "inspect_f") -> list[Condition]:
    """Per task, a filter for each error it reports; what is left at its default filters nothing.
    A flag: "only where wrong"; a count of errors: at least; a share or value: at most (when low
    is worse) or at least (when high is worse)."""
    conditions: list[Condition] = []
    cols = st.columns(min(len(tasks), 4) or 1)
    for i, (t, task) in enumerate(tasks.items()):
        with cols[i % len(cols)]:
            st.markdown(f"**{html.escape(task.title or t)}**")
            for c in task.display.error_columns:
                key, name = f"{prefix}_{t}_{c.name}", f"{t}/{c.name}"
                if not c.worse:
                    continue
                if c.kind == FLAG:
                    if st.checkbox(f"only {c.title}", key=key, help=c.help or None):
                        conditions.append(Condition(name, ">=", 1))
                elif c.kind == COUNT and c.worse == "high":  # "found objects at most" would be a strange question
                    v = st.number_input(f"{c.title} at least", 0, 99, 0, 1, key=key, help=c.help or None)
                    if v:
                        conditions.append(Condition(name, ">=", int(v)))
                elif c.kind in (FRACTION, VALUE):
                    top = 1.0 if c.kind == FRACTION else 2.0
                    default = top if c.worse == "low" else 0.0
                    label = f"{c.title} at most" if c.worse == "low" else f"{c.title} at least"
                    v = st.slider(label, 0.0, top, default, 0.01 if top == 1.0 else 0.02, key=key, help=c.help or None)
                    if v != default:
                        conditions.append(Condition(name, "<=" if c.worse == "low" else ">=", float(v)))
    return conditions


def caption_lines(tasks: Mapping[str, Any], row: Mapping[str, Any], show: Mapping[str, bool]) -> list[str]:
    return [views.task_line(task, row, t) for t, task in tasks.items() if show.get(t, True) and f"{t}/failed" in row]


def grid(ck: Mapping[str, Any], split: str, out: Any, table: Mapping[str, Sequence], positions: Sequence[int],
         show: Mapping[str, bool], threshold: float, on_open: Callable[[int], None], key: str) -> None:
    """Thumbnails of ``positions`` with their errors in words and an Open button each."""
    path, mtime = checkpoint_key(ck)
    shown = tuple(sorted(show.items()))
    cols = st.columns(COLUMNS)
    for n, j in enumerate(positions):
        with cols[n % COLUMNS]:
            row = views.row_of(table, j)
            st.image(thumbnail(path, mtime, split, j, shown, threshold, out), width="stretch", output_format="PNG")
            failed = row.get("tasks_failed", 0)
            st.caption(f"**#{out.indices[j]}** · {failed} task{'s' if failed != 1 else ''} failed  \n"
                       + "  \n".join(html.escape(line) for line in caption_lines(out.tasks, row, show)))
            st.button("Open", key=f"{key}_open_{j}", on_click=on_open, args=(j,), width="stretch")


def chips(entries: Sequence[tuple[str, str]]) -> str:
    return " ".join(f'<span style="background:{c};color:#fff;padding:1px 6px;border-radius:4px;font-size:0.8em;'
                    f'text-shadow:0 0 2px #000">{html.escape(n)}</span>' for n, c in entries)


def show_view(tasks: Mapping[str, Any], v: views.SampleView, key: str, max_columns: int = 3) -> None:
    """A drawn sample: its panels, a line per task, the top answers as bars, the error colours."""
    for start in range(0, len(v.panels), max_columns):
        row = v.panels[start:start + max_columns]
        for col, (caption, image) in zip(st.columns(max_columns), row, strict=False):
            col.image(image, caption=caption, width="stretch", output_format="PNG")
    if v.lines:
        st.markdown("  \n".join(html.escape(line) for line in v.lines))
    if v.legends:
        st.markdown(" ".join(f"{html.escape(tasks[t].title or t)}: {chips(e)}" for t, e in v.legends.items()),
                    unsafe_allow_html=True)
    if v.top:
        cols = st.columns(max(3, len(v.top)))
        for col, (t, top) in zip(cols, v.top.items(), strict=False):
            truth = v.truth_of.get(t, "")
            title = f"{tasks[t].title or t}" + (f" (truth: {truth})" if truth else "")
            col.plotly_chart(top_figure(top, truth, title), key=f"{key}_top_{t}", width="stretch",
                             config={"displayModeBar": False})


def fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.4g}" if isinstance(v, float) else str(v))
