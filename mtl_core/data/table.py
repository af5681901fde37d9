"""A table of labels: the format people already keep their labels in, read, typed and checked.

One row per image, as CSV (a header row first) or JSON lines (one object per line):

- ``image``: the image's path, relative to the table's folder (required);
- ``split``: ``train``, ``val`` or ``test`` (optional; without it a fixed 80/10/10 shuffle);
- one column per task, its cells in the format of the task's kind:

  ==================  ==========================================================================
  ``classification``  a class name (``cat``) or a class index (``3``)
  ``binary``          ``0``/``1``, ``-1``/``1`` (CelebA's), ``true``/``false``, ``yes``/``no``
  ``multilabel``      class names separated by ``|`` (``cat|dog``)
  ``regression``      a number (``34.5``)
  ``count``           a whole number ``>= 0``
  ``segmentation``    a mask PNG's path: a palette or grey image of class values (0 background,
                      ``1..K`` the classes, 255 not labelled; with the option ``background: 0``,
                      ``0..K-1`` the classes and no background)
  ``depth``           a depth map's path: a 16-bit PNG or a ``.npy`` array, 0 where unknown
  ``normals``         a normal map's path: a ``.npy`` array of ``(H, W, 3)`` unit vectors (``x``
                      right, ``y`` up, ``z`` towards the camera; all 0 where unknown), or an
                      RGB image of ``(n + 1) / 2`` of 255 (black where unknown; declare its kind)
  ``detection``       boxes as JSON: ``[[x, y, w, h, "class"], ...]`` in the image's pixels
  ==================  ==========================================================================

An empty cell is a missing label: that image teaches the other tasks only. A column's kind is
inferred where its cells say it unambiguously (boxes, ``|`` lists, mask or depth paths, text,
fractions, two values 0/1, few whole numbers as class indices); where they do not (many whole
numbers: an age, a count or 40 classes?), it is declared in a ``tasks.json`` beside the table
(``{"age": {"kind": "regression"}}``, the fields of :class:`~mtl_core.config.TaskSpec`) or in the
config's ``task_specs``.

:func:`check` lists every problem with the file and row a person must open to fix it.
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtl_core.config import TaskSpec, spec_from_dict
from mtl_core.data.image_folder import partition
from mtl_core.errors import ConfigError

RESERVED = ("image", "split")
SPLIT_NAMES = ("train", "val", "test")
SPEC_FILE = "tasks.json"
MAX_CLASS_INDICES = 20  # whole numbers with at most this many distinct values read as class indices
IGNORE = 255  # a mask value that is not a label
TRUE, FALSE = ("1", "true", "yes", "y", "t"), ("0", "-1", "false", "no", "n", "f")
MASK_SUFFIXES, DEPTH_SUFFIXES = (".png", ".bmp", ".tif", ".tiff"), (".npy",)
MAX_LINES = 50  # problems listed one by one; the rest are counted


@dataclass(frozen=True)
class Row:
    """One image's row: where it is in the file (``line``: the line a spreadsheet or editor shows,
    the header being line 1 of a CSV), its image path, split (``""``: none given) and raw cells."""

    line: int
    image: str
    split: str
    cells: dict[str, str]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data, with where to look."""

    file: str
    line: int  # 0: the problem is the column's, not one row's
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, row {self.line}" if self.line else self.file
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


@dataclass
class Table:
    """A label table read from ``path``: its rows, its task columns and their specs."""

    path: Path
    rows: list[Row]
    columns: list[str]
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # column -> how its kind was found

    @property
    def folder(self) -> Path:
        return self.path.parent

    def image_path(self, row: Row) -> Path:
        return self.folder / row.image

    def file_path(self, cell: str) -> Path:
        return self.folder / cell


def summary(problems: Sequence[Problem], limit: int = MAX_LINES) -> str:
    """At most ``limit`` lines, then a count of the rest by column."""
    lines = [str(p) for p in problems[:limit]]
    rest = problems[limit:]
    if rest:
        by = Counter(p.column or "table" for p in rest)
        lines.append(f"… and {len(rest)} more ({', '.join(f'{n} in {c}' for c, n in by.most_common())})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- reading
def read_rows(path: Path) -> tuple[list[Row], list[str]]:
    """The rows of a CSV or JSON-lines table and its task columns (every column but image and split)."""
    name = path.name
    if not path.is_file():
        raise ConfigError("data.root", f"{path} is not a file; set data.root to a label table (.csv or .jsonl)")
    rows: list[Row] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("data.root", f"{name} cannot be read as UTF-8 text ({e})") from None
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        columns: dict[str, None] = {}
        for i, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ConfigError("data.root", f"{name}, line {i}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ConfigError("data.root", f"{name}, line {i}: expected a JSON object per line, got {type(obj).__name__}")
            cells = {str(k): _cell(v) for k, v in obj.items()}
            columns.update(dict.fromkeys(k for k in cells if k not in RESERVED))
            rows.append(Row(i, cells.pop("image", ""), cells.pop("split", "").strip().lower(), cells))
        header = ["image", *columns]
    else:
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        for i, record in enumerate(reader, start=2):
            if None in record:
                raise ConfigError("data.root", f"{name}, row {i}: more cells than the header has columns")
            cells = {k: (v or "").strip() for k, v in record.items()}
            rows.append(Row(i, cells.pop("image", ""), cells.pop("split", "").lower(), cells))
    if "image" not in header:
        raise ConfigError("data.root", f"{name} has no 'image' column; its columns: {', '.join(header) or 'none'}. "
                          "Name the column of image paths 'image'")
    task_columns = [c for c in header if c not in RESERVED]
    if not task_columns:
        raise ConfigError("data.root", f"{name} has only {', '.join(c for c in header if c)}: add one column per task")
    if not rows:
        raise ConfigError("data.root", f"{name} has a header but no rows")
    return rows, task_columns


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v).strip()


def declared_specs(path: Path) -> dict[str, TaskSpec]:
    """The specs in ``tasks.json`` beside the table (none when there is no such file)."""
    spec_path = path.parent / SPEC_FILE
    if not spec_path.is_file():
        return {}
    try:
        raw = json.loads(spec_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("data.root", f"{spec_path} is not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError("data.root", f"{spec_path}: expected an object of column: {{\"kind\": ...}}")
    out = {}
    for col, d in raw.items():
        try:
            out[str(col)] = spec_from_dict(d, f"{SPEC_FILE}: {col}.")
        except ConfigError as e:
            raise ConfigError("data.root", f"{spec_path.name} beside {path.name}: {e}") from None
    return out


# ----------------------------------------------------------------------------------- kinds
def _number(s: str) -> float | None:
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def infer_kind(column: str, values: Sequence[str], folder: Path) -> tuple[str, str]:
    """``(kind, how it was told)`` from a column's non-empty cells; ``("", why not)`` when they
    could be read more than one way."""
    if not values:
        return "", "the column is empty"
    if all(v.startswith("[") for v in values):
        return "detection", "cells are lists of boxes"
    lower = [v.lower() for v in values]
    if all(v.endswith(DEPTH_SUFFIXES) for v in lower):
        shape = _array_shape(folder / values[0])
        if len(shape) == 3 and 3 in (shape[0], shape[-1]):
            return "normals", "cells are .npy arrays of 3 channels (normal maps)"
        return "depth", "cells are .npy arrays"
    if all(v.endswith(MASK_SUFFIXES) for v in lower):
        mode = _image_mode(folder / values[0])
        if mode in ("I;16", "I;16B", "I", "F"):
            return "depth", f"cells are {mode} images (16-bit or float: depth)"
        return "segmentation", "cells are 8-bit label images"
    if any("|" in v for v in values):
        return "multilabel", "cells list names separated by |"
    numbers = [_number(v) for v in values]
    if any(n is None for n in numbers):
        if set(lower) <= set(TRUE + FALSE) and len(set(lower)) <= 2:
            return "binary", "cells are yes/no"
        return "classification", "cells are class names"
    distinct = set(numbers)
    if distinct <= {0.0, 1.0} or distinct <= {-1.0, 1.0}:
        return "binary", f"cells are {'/'.join(sorted({v for v in values}))}"
    if any(not float(n).is_integer() for n in distinct):
        return "regression", "cells are numbers with fractions"
    if len(distinct) <= MAX_CLASS_INDICES and min(distinct) >= 0:
        return "classification", f"cells are {len(distinct)} whole numbers, read as class indices"
    return "", (f"its {len(distinct)} different whole numbers could be classes, a count or a quantity; declare "
                f"its kind (classification, count or regression) in {SPEC_FILE} beside the table, "
                f'e.g. {{"{column}": {{"kind": "regression"}}}}, or in the config\'s task_specs')


def _array_shape(path: Path) -> tuple[int, ...]:
    """The shape of a ``.npy`` array from its header alone (``()`` when it cannot be read)."""
    try:
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
    except (OSError, ValueError):
        return ()


def _image_mode(path: Path) -> str:
    try:
        with Image.open(path) as im:
            return im.mode
    except OSError:
        return ""


def class_list(kind: str, values: Sequence[str]) -> tuple[str, ...]:
    """The classes a column's cells name, in index order: indices ``0..max`` as their digits,
    else sorted names (multilabel and detection: the names inside the cells)."""
    if kind == "classification":
        numbers = [_number(v) for v in values]
        if values and all(n is not None and float(n).is_integer() and n >= 0 for n in numbers):
            return tuple(str(i) for i in range(int(max(numbers)) + 1))  # type: ignore[type-var]
        return tuple(sorted(set(values)))
    if kind == "multilabel":
        return tuple(sorted({p.strip() for v in values for p in v.split("|") if p.strip()}))
    if kind == "detection":
        names: set[str] = set()
        for v in values:
            try:
                names.update(str(b[4]) for b in json.loads(v) if isinstance(b, list) and len(b) == 5)
            except (json.JSONDecodeError, TypeError):
                continue
        return tuple(sorted(names))
    return ()


@lru_cache(maxsize=8)
def _mask_top(paths: tuple[str, ...], ignore: int, version: int) -> int:
    """The largest class value in these masks (the ignore value aside): how many classes a
    segmentation column has when ``tasks.json`` does not name them. Unreadable masks are skipped
    here; the check names them."""
    top = 0
    for path in paths:
        try:
            with Image.open(path) as im:
                values = set(int(v) for v in im.getextrema()) if im.mode == "1" else {int(c) for _, c in (im.getcolors(1 << 16) or [])}
        except (OSError, ValueError):
            continue
        top = max([top, *(v for v in values if v != ignore and v <= 254)])
    return top


@lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int, size: int) -> tuple[list[Row], list[str]]:
    return read_rows(Path(path))


def load_table(path: str | Path, specs: Mapping[str, TaskSpec] | None = None) -> Table:
    """The table at ``path`` with a spec for every task column: declared (``specs`` over
    ``tasks.json``) or inferred. A column whose kind cannot be told is left without a spec, and
    :attr:`Table.notes` says why (a run that selects it is refused with that reason)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError("data.root", f"{p} does not exist; set data.root to your label table (.csv or .jsonl)")
    if p.is_dir():
        found = sorted([*p.glob("*.csv"), *p.glob("*.jsonl")])
        if len(found) != 1:
            raise ConfigError("data.root", f"{p} is a folder with {len(found)} label tables; set data.root to the "
                              "table itself (.csv or .jsonl)")
        p = found[0]
    st = p.stat()
    rows, columns = _read(str(p.resolve()), st.st_mtime_ns, st.st_size)
    declared = {**declared_specs(p), **{k: v for k, v in (specs or {}).items() if k in columns or v.column in columns}}
    table = Table(p, rows, columns)
    # label statistics (a regression label's mean) come from the training rows only: val and test stay unseen
    train = [r for r in rows if r.split == "train"] if any(r.split for r in rows) else \
        [rows[i] for i in (partition(len(rows))["train"] if len(rows) >= len(SPLIT_NAMES) else range(len(rows)))]
    for col in columns:
        values = [r.cells.get(col, "") for r in rows]
        values = [v for v in values if v]
        spec = declared.get(col, TaskSpec())
        kind, note = (spec.kind, "declared") if spec.kind else infer_kind(col, values, p.parent)
        table.notes[col] = note
        if not kind:
            continue
        classes = spec.classes or class_list(kind, values)
        if kind == "segmentation" and not classes:
            top = _mask_top(tuple(str(p.parent / v) for v in values), int(spec.options.get("ignore_index", IGNORE)),
                            st.st_mtime_ns)
            first = 1 if spec.options.get("background", 1) else 0  # option background: 0 = no background label
            classes = tuple(f"class {k}" for k in range(first, top + 1))
        options = dict(spec.options)
        if kind == "regression" and values:
            nums = [n for r in train if (n := _number(r.cells.get(col, ""))) is not None] or \
                [n for v in values if (n := _number(v)) is not None]
            if nums:
                mean = sum(nums) / len(nums)
                options.setdefault("mean", mean)
                options.setdefault("std", math.sqrt(sum((x - mean) ** 2 for x in nums) / len(nums)) or 1.0)
        if kind == "count" and values:
            nums = [n for v in values if (n := _number(v)) is not None]
            options.setdefault("max_count", max([*nums, 1.0]))
        table.specs[col] = TaskSpec(kind=kind, column=col, classes=tuple(classes), loss=spec.loss, title=spec.title,
                                    options=options)
    return table
