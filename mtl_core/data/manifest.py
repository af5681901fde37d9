"""The ``manifest`` dataset: your own images and a table of their labels (see :mod:`.table`).

``data.root`` is the table (``labels.csv`` or ``labels.jsonl``); image, mask, depth and normal
map paths in it are relative to its folder. Each task is a column: the config's ``tasks`` name the columns to
learn, and every column becomes a task of its kind (two digit columns are two classification
tasks, 40 attribute columns 40 binary tasks).

Before a run starts, every row of the selected columns is checked (:func:`find_problems`): an
image missing or unreadable, a class that never occurs in train, a mask value beyond the
classes, a depth map of another size than its image, a box outside its image, a column empty in
a split. With ``data.on_error: fail`` (the default) the dataset refuses to open and the error
lists them (file and row); with ``skip`` the rows with problems are left out and
:attr:`ManifestDataset.skipped` says how many and why, which the run records.

Images are read in their stored pixel frame (no EXIF rotation: the labels' coordinates are in
that frame, as in COCO) and brought to ``data.image_size`` with ``data.resize`` (letterbox by
default: boxes and masks follow exactly, see :mod:`.resize`).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mtl_core.config import DataConfig, TaskSpec
from mtl_core.data.base import DatasetInfo, Sample, register_dataset
from mtl_core.data.cache import default_cache
from mtl_core.data.image_folder import cap, check_split, load_image, partition, resize_policy
from mtl_core.data.resize import Fit
from mtl_core.data.seg_folder import read_label_png
from mtl_core.data.table import FALSE, IGNORE, SPLIT_NAMES, TRUE, Problem, Row, Table, _number, load_table, summary
from mtl_core.errors import ConfigError, MTLError

EXPECTED = "a label table: a .csv or .jsonl file with an 'image' column and one column per task"


class DataProblemsError(MTLError):
    """The data has problems a run would trip over; ``problems`` lists them, the message shows
    the first 50 with file and row."""

    def __init__(self, problems: Sequence[Problem], table: str) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in {table} "
                         "(fix them, or set data.on_error to skip to leave those rows out):\n" + summary(self.problems))


# ----------------------------------------------------------------------------------- cells
def _depth_values(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
            arr = arr.reshape(arr.shape[-2:] if arr.shape[0] == 1 else arr.shape[:2])
        if arr.ndim != 2:
            raise ValueError(f"an array of shape {arr.shape}; save one (H, W) depth map")
        return arr.astype(np.float32)
    with Image.open(path) as im:
        return np.array(im, dtype=np.float32)


def _normal_values(path: Path) -> np.ndarray:
    """A normal map as float ``(3, h, w)`` unit vectors, 0 where unknown: a ``.npy`` array of
    ``(h, w, 3)`` or ``(3, h, w)`` vectors, or an RGB image coding each as ``(n + 1) / 2`` of 255
    (black: no label); ``x`` right, ``y`` up, ``z`` towards the camera."""
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False).astype(np.float32)
        if arr.ndim != 3 or 3 not in (arr.shape[0], arr.shape[-1]):
            raise ValueError(f"an array of shape {arr.shape}; save one (H, W, 3) normal map")
        arr = np.moveaxis(arr, -1, 0) if arr.shape[-1] == 3 else arr
        unknown = ~np.isfinite(arr).all(0) | (arr == 0).all(0)
    else:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA"):
                raise ValueError(f"a {im.mode} image; save normals as an RGB image, (n + 1) / 2 of 255 per channel")
            rgb = np.moveaxis(np.array(im.convert("RGB"), dtype=np.float32), -1, 0)  # (3, h, w)
        unknown = (rgb == 0).all(0)
        arr = rgb / 127.5 - 1.0
    length = np.sqrt((np.nan_to_num(arr) ** 2).sum(0))
    return np.where(unknown | (length == 0), 0.0, np.nan_to_num(arr) / np.maximum(length, 1e-12)).astype(np.float32)


def _boxes(cell: str) -> list[tuple[float, float, float, float, str]]:
    raw = json.loads(cell)
    if not isinstance(raw, list):
        raise ValueError("expected a list of [x, y, w, h, \"class\"]")
    out = []
    for b in raw:
        if not (isinstance(b, list) and len(b) == 5 and all(isinstance(v, (int, float)) for v in b[:4])):
            raise ValueError(f"a box must be [x, y, w, h, \"class\"], got {json.dumps(b)[:60]}")
        out.append((float(b[0]), float(b[1]), float(b[2]), float(b[3]), str(b[4])))
    return out


def _class_index(spec: TaskSpec, cell: str) -> int:
    if cell in spec.classes:
        return spec.classes.index(cell)
    n = _number(cell)
    if n is not None and float(n).is_integer() and 0 <= n < len(spec.classes):
        return int(n)
    raise ValueError(f"{cell!r} is not one of its {len(spec.classes)} classes ({', '.join(spec.classes[:8])}"
                     f"{' …' if len(spec.classes) > 8 else ''})")


def _binary(spec: TaskSpec, cell: str) -> int:
    low = cell.lower()
    if len(spec.classes) == 2 and cell in spec.classes:
        return spec.classes.index(cell)
    if low in TRUE:
        return 1
    if low in FALSE:
        return 0
    raise ValueError(f"{cell!r} is not yes/no (1/0, -1/1, true/false)")


# ----------------------------------------------------------------------------------- checking
def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the image's header; raises OSError when it cannot be read."""
    with Image.open(path) as im:
        w, h = im.size
    return h, w


def _other_size(what: str, shape: tuple[int, ...], image_hw: tuple[int, int] | None) -> str | None:
    """A dense label of another size than its image (``None`` when it fits, or the image's is unknown)."""
    if image_hw is None or tuple(shape) == image_hw:
        return None
    return f"{what} is {shape[1]}x{shape[0]}, its image {image_hw[1]}x{image_hw[0]}: save it at the image's size"


def check_cell(table: Table, spec: TaskSpec, cell: str, image_hw: tuple[int, int] | None) -> str | None:
    """What is wrong with one cell of a column of ``spec``'s kind (``None``: nothing)."""
    kind = spec.kind
    try:
        if kind == "classification":
            _class_index(spec, cell)
        elif kind == "binary":
            _binary(spec, cell)
        elif kind == "multilabel":
            unknown = [p for p in (x.strip() for x in cell.split("|")) if p and p not in spec.classes]
            if unknown:
                return f"{unknown[0]!r} is not one of its classes"
        elif kind in ("regression", "count"):
            n = _number(cell)
            if n is None:
                return f"{cell!r} is not a number"
            if kind == "count" and (n < 0 or not float(n).is_integer()):
                return f"{cell!r} is not a whole number >= 0"
        elif kind == "segmentation":
            path = table.file_path(cell)
            if not path.is_file():
                return f"mask {cell} does not exist"
            values = read_label_png(path)
            ignore = int(spec.options.get("ignore_index", IGNORE))
            first = 1 if spec.options.get("background", 1) else 0  # option background: 0 = no background label
            bad = sorted(set(values.unique().tolist()) - {ignore} - set(range(len(spec.classes) + first)))
            if bad:
                meaning = "0 is background, " if first else ""
                return (f"mask {cell} has value {bad[0]} beyond its {len(spec.classes)} classes ({meaning}"
                        f"{first}..{len(spec.classes) + first - 1} the classes, {ignore} not labelled)")
            return _other_size(f"mask {cell}", tuple(values.shape), image_hw)
        elif kind == "depth":
            path = table.file_path(cell)
            if not path.is_file():
                return f"depth map {cell} does not exist"
            return _other_size(f"depth map {cell}", _depth_values(path).shape, image_hw)
        elif kind == "normals":
            path = table.file_path(cell)
            if not path.is_file():
                return f"normal map {cell} does not exist"
            return _other_size(f"normal map {cell}", _normal_values(path).shape[1:], image_hw)
        elif kind == "detection":
            for x, y, w, h, name in _boxes(cell):
                if name not in spec.classes:
                    return f"box class {name!r} is not one of its classes"
                if w <= 0 or h <= 0:
                    return f"box [{x:g}, {y:g}, {w:g}, {h:g}] has no area"
                if image_hw is not None and (x < 0 or y < 0 or x + w > image_hw[1] + 0.5 or y + h > image_hw[0] + 0.5):
                    return (f"box [{x:g}, {y:g}, {w:g}, {h:g}] reaches outside its {image_hw[1]}x{image_hw[0]} image "
                            "(boxes are x, y, width, height in the image's pixels)")
    except (ValueError, OSError, json.JSONDecodeError) as e:
        return str(e)
    return None


def assign_splits(table: Table) -> tuple[dict[str, list[int]], list[Problem]]:
    """Row positions per split: the ``split`` column where the table has one, else a fixed
    80/10/10 shuffle; and the rows whose split is not one of train, val, test."""
    given = [r.split for r in table.rows]
    problems = []
    if not any(given):
        if len(table.rows) < len(SPLIT_NAMES):
            raise ConfigError("data.root", f"{table.path.name} has {len(table.rows)} rows; at least 3 are needed (one per split)")
        return partition(len(table.rows)), problems
    out: dict[str, list[int]] = {s: [] for s in SPLIT_NAMES}
    for i, r in enumerate(table.rows):
        if r.split in out:
            out[r.split].append(i)
        else:
            what = f"split {r.split!r}" if r.split else "an empty split"
            problems.append(Problem(table.path.name, r.line, "split", f"{what}; use train, val or test"))
    return out, problems


_CHECKED: dict[tuple, tuple[float, tuple[list[Problem], set[int]]]] = {}
CHECK_TTL_S = 30.0  # a fixed image is seen within this long even when the table itself did not change


def find_problems(table: Table, columns: Sequence[str]) -> tuple[list[Problem], set[int]]:
    """Every problem of ``columns`` (and of every row's image), and the positions of the rows that
    have one (what ``on_error: skip`` leaves out). Column problems (line 0) have no row. The
    answer is kept a little while for the table's version and these columns' specs, so the train,
    val and test splits of one run read every image header once."""
    key = (str(table.path), table.path.stat().st_mtime_ns, tuple(columns),
           tuple((c, repr(table.specs.get(c))) for c in columns))
    now = time.monotonic()
    if key not in _CHECKED or now - _CHECKED[key][0] > CHECK_TTL_S:
        if len(_CHECKED) >= 8:
            _CHECKED.pop(next(iter(_CHECKED)))
        _CHECKED[key] = (now, _find_problems(table, columns))
    return _CHECKED[key][1]


def _find_problems(table: Table, columns: Sequence[str]) -> tuple[list[Problem], set[int]]:
    name = table.path.name
    problems: list[Problem] = []
    bad: set[int] = set()
    splits, split_problems = assign_splits(table)
    problems += split_problems
    bad.update(i for i, r in enumerate(table.rows) if r.split and r.split not in SPLIT_NAMES)
    for col in columns:
        if col not in table.specs:
            problems.append(Problem(name, 0, col, f"its kind is unknown: {table.notes.get(col, 'no such column')}"))
    checked = [c for c in columns if c in table.specs]
    sized = {"segmentation", "depth", "normals", "detection"}
    for i, r in enumerate(table.rows):
        path_i = table.image_path(r)
        hw = None
        if not r.image:
            problems.append(Problem(name, r.line, "image", "no image path"))
            bad.add(i)
            continue
        try:
            hw = _image_size(path_i) if path_i.is_file() else None
            if hw is None:
                problems.append(Problem(name, r.line, "image", f"{r.image} does not exist"))
                bad.add(i)
                continue
        except OSError as e:
            problems.append(Problem(name, r.line, "image", f"{r.image} cannot be read as an image ({str(e)[:80]})"))
            bad.add(i)
            continue
        for col in checked:
            cell = r.cells.get(col, "")
            if not cell:
                continue
            spec = table.specs[col]
            msg = check_cell(table, spec, cell, hw if spec.kind in sized else None)
            if msg:
                problems.append(Problem(name, r.line, col, msg))
                bad.add(i)
    for col in checked:
        spec = table.specs[col]
        for split, idx in splits.items():
            if idx and not any(table.rows[i].cells.get(col) for i in idx):
                problems.append(Problem(name, 0, col, f"no label in the {split} split: every {split} row's cell is empty"))
        if spec.kind in ("classification", "binary"):
            seen = Counter()
            for i in splits["train"]:
                cell = table.rows[i].cells.get(col, "")
                if cell and check_cell(table, spec, cell, None) is None:
                    seen[_class_index(spec, cell) if spec.kind == "classification" else _binary(spec, cell)] += 1
            names = spec.classes if spec.kind == "classification" else (spec.classes if len(spec.classes) == 2 else ("0", "1"))
            missing = [names[k] for k in range(len(names)) if not seen[k]]
            if missing and splits["train"]:
                problems.append(Problem(name, 0, col, f"class {missing[0]!r} never occurs in train"
                                        + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
                                        + ": the model cannot learn it"))
    return problems, bad


# ----------------------------------------------------------------------------------- dataset
@register_dataset("manifest")
class ManifestDataset:
    """Your own images and a table of their labels (CSV or JSON lines), one column per task.

    See :mod:`mtl_core.data.manifest` and the README's "Your own data"."""

    reads_specs = True  # build_dataset passes the config's task_specs and tasks

    def __init__(self, cfg: DataConfig, split: str, seed: int = 0, specs: Mapping[str, TaskSpec] | None = None,
                 tasks: Sequence[str] | None = None) -> None:
        check_split(split)
        if not cfg.root:
            raise ConfigError("data.root", f"the manifest dataset needs data.root: set it to {EXPECTED}")
        self.table = load_table(cfg.root, specs)
        table = self.table
        wanted = [t for t in (tasks or table.columns) if t in table.columns or (specs or {}).get(t, TaskSpec()).column]
        self.columns = [(specs or {}).get(t, TaskSpec()).column or t for t in wanted]
        problems, bad = find_problems(table, self.columns)
        self.problems = problems
        self.skipped: dict[str, int] = {}  # "column: cause" -> rows left out for it
        self.skipped_rows = 0
        if problems and cfg.on_error != "skip":
            raise DataProblemsError(problems, str(table.path))
        if problems:
            rows_bad = [p for p in problems if p.line]
            self.skipped = dict(Counter(f"{p.column}: {_reason(p.message)}" for p in rows_bad))
            self.skipped_rows = len(bad)
        splits, _ = assign_splits(table)
        order = [i for i in splits[split] if i not in bad]
        self.cfg, self.split = cfg, split
        self.policy = resize_policy(cfg)
        self.available = len(order)
        self.indices = cap(order, cfg, split)
        usable = [c for c in dict.fromkeys(table.columns) if c in table.specs]
        # the columns a sample reads: the config's tasks (checked above), not every column the table has
        self.loaded = [c for c in dict.fromkeys(self.columns) if c in table.specs]
        self.info = DatasetInfo(name="manifest", class_names=(), image_size=cfg.image_size, tasks=tuple(usable),
                                specs={c: table.specs[c] for c in usable},
                                max_objects=max([_max_boxes(table, c) for c in usable
                                                 if table.specs[c].kind == "detection"] + [0]),
                                depth_max=max([depth_range(table, c, tuple(i for i in range(len(table.rows)) if i not in bad))
                                               for c in self.loaded if table.specs[c].kind == "depth"] + [0.0]) or 1.0)

    def __len__(self) -> int:
        return len(self.indices)

    def label_count(self, task: str) -> int:
        """How many of this split's images have a label for ``task`` (a column name)."""
        return sum(1 for i in self.indices if self.table.rows[i].cells.get(task))

    def __getitem__(self, i: int) -> Sample:
        row = self.table.rows[self.indices[i]]
        image, f = self.load_image(row)
        targets: dict[str, Any] = {}
        valid: dict[str, bool] = {}
        for col in self.loaded:
            cell = row.cells.get(col, "")
            spec = self.table.specs[col]
            targets[col] = self.target(spec, cell, f) if cell else self.placeholder(spec)
            valid[col] = bool(cell)
        targets["valid"] = valid
        return image, targets

    def load_image(self, row: Row) -> tuple[Tensor, Fit]:
        """The row's image at the model's size, and the Fit its labels follow: decoded once and
        kept (see :mod:`~mtl_core.data.cache`), so the second epoch opens no JPEG."""
        return load_image(self.table.image_path(row), self.cfg.hw, self.policy, exif=False, cache=default_cache())

    def target(self, spec: TaskSpec, cell: str, f: Fit) -> Any:
        """One cell as the target of its kind (see :mod:`mtl_core.data.base`), at the model's size."""
        kind = spec.kind
        if kind == "classification":
            return torch.tensor(_class_index(spec, cell))
        if kind == "binary":
            return torch.tensor(_binary(spec, cell))
        if kind == "multilabel":
            out = torch.zeros(len(spec.classes))
            for part in (p.strip() for p in cell.split("|")):
                if part in spec.classes:
                    out[spec.classes.index(part)] = 1.0
            return out
        if kind == "regression":
            return torch.tensor(float(cell))
        if kind == "count":
            return torch.tensor(int(float(cell)))
        if kind == "segmentation":
            values = read_label_png(self.table.file_path(cell))  # (h0, w0)
            ignore = int(spec.options.get("ignore_index", IGNORE))
            values = torch.where(values == ignore, torch.full_like(values, IGNORE), values)
            return f.mask(values, IGNORE)
        if kind == "depth":
            values = torch.from_numpy(_depth_values(self.table.file_path(cell)))[None]  # (1, h0, w0)
            return f.mask(values * float(spec.options.get("depth_scale", 1.0)), 0.0)
        if kind == "normals":
            return f.normals(torch.from_numpy(_normal_values(self.table.file_path(cell))))  # (3, H, W)
        if kind == "detection":
            boxes = _boxes(cell)
            xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _ in boxes], dtype=torch.float32).reshape(-1, 4)
            labels = torch.tensor([spec.classes.index(n) for *_, n in boxes], dtype=torch.long)
            moved, keep = f.boxes(xyxy)
            return {"boxes": moved, "labels": labels[keep]}
        raise ConfigError(f"task_specs.{spec.column}.kind", f"unknown kind {kind!r}")

    def placeholder(self, spec: TaskSpec) -> Any:
        """A target of the right shape for a missing label (masked from the loss)."""
        h, w = self.cfg.hw
        kind = spec.kind
        if kind == "multilabel":
            return torch.zeros(len(spec.classes))
        if kind == "regression":
            return torch.tensor(0.0)
        if kind == "segmentation":
            return torch.full((h, w), IGNORE, dtype=torch.long)
        if kind == "depth":
            return torch.zeros(1, h, w)
        if kind == "normals":
            return torch.zeros(3, h, w)
        if kind == "detection":
            return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
        return torch.tensor(0)


def _reason(message: str) -> str:
    """A problem's message without its particulars, to count the skipped rows by cause."""
    for cue in (" does not exist", " cannot be read", " is not one of", " beyond its", " reaches outside",
                " is not a number", " is not yes/no", "split"):
        if cue in message:
            return cue.strip()
    return message[:40]


def _max_boxes(table: Table, column: str) -> int:
    most = 0
    for r in table.rows:
        try:
            most = max(most, len(_boxes(r.cells.get(column) or "[]")))
        except (ValueError, json.JSONDecodeError):
            continue
    return most


def depth_range(table: Table, column: str, rows: tuple[int, ...]) -> float:
    """The largest depth in a column's maps over ``rows`` (its head's output range); option
    ``depth_max`` says it without reading them. Read once per table version: a run opens three
    splits of one table."""
    spec = table.specs[column]
    if "depth_max" in spec.options:
        return float(spec.options["depth_max"])
    cells = tuple(c for i in rows if (c := table.rows[i].cells.get(column)))
    return _depth_top(str(table.folder), cells, table.path.stat().st_mtime_ns) * float(spec.options.get("depth_scale", 1.0))


@lru_cache(maxsize=8)
def _depth_top(folder: str, cells: tuple[str, ...], version: int) -> float:
    return max([float(_depth_values(Path(folder) / c).max()) for c in cells] + [0.0])

