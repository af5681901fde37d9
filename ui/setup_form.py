"""Setup's callbacks (loading an upload, an example, a label table) and widgets: each followed by
the problems of its field (:class:`Form`), a table editor of per-task values for runs of many
tasks (weights, label budgets), and a label table's columns."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from mtl_core.config import ExperimentConfig
from mtl_core.data.check import check_data
from mtl_core.errors import ConfigError, MTLError
from mtl_core.training.validation import dataset_tasks
from ui import config_state as cs

K = cs.PREFIX
KEEP = "session"  # form widgets keep their values across page switches
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_TABLE = ROOT / "assets" / "labels" / "photos.csv"  # the example label table (see its make_photos.py)
EXAMPLE_SIZE = (96, 128)  # its photos' own height x width
ss = st.session_state


# ---- callbacks (run before the script) -----------------------------------------------------
def note(**message: str) -> None:
    """Keep one message about the last load (``upload_ok``, ``example_error`` ...), clearing the others."""
    for name in ("upload_error", "upload_ok", "example_error", "example_ok"):
        ss[f"setup.{name}"] = message.get(name)


def on_upload() -> None:
    upload = ss.get("setup.upload")
    if upload is None:
        return
    try:
        cfg = cs.parse_upload(upload.getvalue())
    except ConfigError as e:
        note(upload_error=str(e))
        return
    cs.load(ss, cfg)  # fills every widget's key: allowed here, before the widgets exist
    note(upload_ok=upload.name)


def on_example(examples: dict[str, cs.Example]) -> None:
    ex = examples.get(ss.get("setup.example") or "")
    if ex is None:
        return
    ss["setup.example"] = None  # back to the placeholder, so the same example can be chosen again
    if ex.config is None:
        note(example_error=f"Could not load the example {ex.file}: {ex.error}")
        return
    cs.load(ss, ex.config)
    note(example_ok=f"Loaded the example **{ex.name}** ({ex.file}: {ex.description}); "
                     "the settings below now hold its values.")


def on_reset() -> None:
    cs.load(ss, ExperimentConfig())
    note()


def on_redraw() -> None:
    ss["setup.preview_draw"] = ss.get("setup.preview_draw", 0) + 1


def on_dataset() -> None:
    """Keep the selected tasks the new dataset supplies (all of them when none would remain)."""
    try:
        supplied = dataset_tasks(cs.build(ss)) or ()
    except MTLError:
        return
    kept = [t for t in ss[K + "tasks"] if t in supplied]
    ss[K + "tasks"] = kept or list(supplied)


def on_example_table() -> None:
    """The example label table: its file, and every task it supplies."""
    ss[K + "data.root"] = str(EXAMPLE_TABLE)
    ss[K + "data.height"], ss[K + "data.width"] = EXAMPLE_SIZE
    on_dataset()


def select_all(names: list[str]) -> None:
    ss[K + "tasks"] = list(names)


@st.cache_data(show_spinner="Reading the label table…", max_entries=16, ttl=30)
def table_tasks(key: str) -> list[dict[str, Any]]:
    """A label table's task columns with their kind and labels per split (nothing when it cannot be read)."""
    try:
        cfg = ExperimentConfig.from_json(key)
        return check_data(dataclasses.replace(cfg, tasks=())).tasks
    except MTLError:
        return []




class Form:
    """The form's widgets, each followed by the problems of its field; every problem is shown once."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        self._shown: set[int] = set()

    def problems(self, path: str, exact: bool = False) -> None:
        """Show, right here, the problems whose field is ``path`` (or below it, unless ``exact``)."""
        for i, e in enumerate(self.errors):
            if i not in self._shown and (e.field == path or (not exact and e.field.startswith(path + "."))):
                st.error(e.message[:1].upper() + e.message[1:], icon=":material/error:")
                self._shown.add(i)

    def unshown(self) -> list[ConfigError]:
        """The problems no widget has shown yet."""
        return [e for i, e in enumerate(self.errors) if i not in self._shown]

    def number(self, path: str, label: str, help: str | None = None, fmt: str | None = None, step: Any = None) -> None:
        value = st.session_state[K + path]
        step = step if step is not None else (1 if isinstance(value, int) else 0.01)
        st.number_input(label, key=K + path, persist_state=KEEP, step=step, format=fmt, help=help)
        self.problems(path)

    def slider(self, path: str, label: str, lo: Any, hi: Any, step: Any, help: str | None = None,
               fmt: str | None = None) -> None:
        value = st.session_state[K + path]  # an uploaded value outside the usual range widens it, so validation can speak
        st.slider(label, min_value=min(lo, value), max_value=max(hi, value), step=step, key=K + path,
                  persist_state=KEEP, help=help, format=fmt)
        self.problems(path)

    def select(self, path: str, label: str, options: list[str], help: str | None = None, fmt=None,
               on_change=None) -> str:
        value = st.session_state[K + path]
        options = list(options) + ([value] if value not in options else [])  # unknown: shown, then flagged
        choice = st.selectbox(label, options, key=K + path, persist_state=KEEP, help=help, format_func=fmt or str,
                              on_change=on_change)
        self.problems(path)
        return choice

    def task_table(self, key: str, tasks: Sequence[str], titles: Mapping[str, str],
                   columns: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        """Per-task values of many tasks as one table editor, a row per task: ``columns`` maps a
        column to the field it edits and its number column's settings (``"weight":
        ("weighting.weights", {"min_value": 0, ...})``). Edits reach each task's own key
        (:func:`~ui.config_state.apply_table_edits`); the problems of every task's entries follow."""
        ss = st.session_state
        fields = {c: field for c, (field, _) in columns.items()}
        st.data_editor(pd.DataFrame([{"task": titles.get(t, t), **{c: float(ss[f"{K}{f}.{t}"]) for c, f in fields.items()}}
                                     for t in tasks]),
                       key=key, hide_index=True, disabled=["task"], width="stretch",
                       on_change=lambda: cs.apply_table_edits(ss, ss.get(key) or {}, list(tasks), fields),
                       column_config={c: st.column_config.NumberColumn(**opts) for c, (_, opts) in columns.items()})
        for t in tasks:
            for field in fields.values():
                self.problems(f"{field}.{t}")


def table_columns(columns: list[dict[str, Any]]) -> None:
    """A label table's task columns: each with its kind, its labels per split and its classes."""
    st.caption(f"The table's {len(columns)} task column{'s' if len(columns) != 1 else ''}; choose any of them below.")
    st.dataframe(pd.DataFrame([{"task": t["name"], "kind": t["kind"] or "unknown: declare it",
                                "labels (train / val / test)": " / ".join(str(t["labels"].get(s, 0))
                                                                          for s in ("train", "val", "test")),
                                "classes": t["classes"]} for t in columns]),
                 hide_index=True, width="stretch", height=min(38 + 35 * len(columns), 300))


def first_line(text: str | None) -> str:
    return (text or "").strip().split("\n\n")[0].replace("\n", " ")
