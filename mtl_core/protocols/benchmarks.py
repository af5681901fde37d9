"""Protocol presets: the papers' benchmarks as configs, with the numbers they publish.

A preset (``assets/benchmarks/<name>.json``) holds a run's config in the paper's or library's
protocol (dataset in its published layout, model, optimiser, schedule, augmentation, model
selection) and the numbers that protocol is published with: each row a method's metrics on the
test split, copied from the cited source (a paper's table, a library's results or code), never
guessed. Where no source could be read, the preset says so in ``missing``. A run started from a
preset names it (``ExperimentConfig.benchmark``), and the run page, Compare and the studies
show the published numbers beside the run's, with Δm against the published single-task row as
the source defines it (:func:`published_delta_m`).

Preset file::

    {"name": "nyuv2", "title": "...", "about": "...", "data": "where the files come from",
     "config": {... a partial ExperimentConfig ...},
     "higher_is_better": {"segmentation/miou": true, "depth/abs_err": false, ...},
     "delta_m": "per_metric" | "per_task",
     "published": [{"method": "single-task" | "ew" | <a weighting method>, "label": "...",
                    "citation": "...", "source": "...", "metrics": {"<task>/<metric>": value}, "note": "..."}],
     "missing": "which published numbers are not here, and why"}
"""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_core.config import ExperimentConfig, merge
from mtl_core.errors import ConfigError

PRESETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "benchmarks"
SINGLE_TASK = "single-task"


@dataclass(frozen=True)
class PublishedRow:
    """One method's published test metrics in a protocol, with where they come from."""

    method: str
    label: str
    citation: str
    source: str
    metrics: dict[str, float]
    note: str = ""


@dataclass(frozen=True)
class Preset:
    """A protocol preset (see the module's docstring)."""

    name: str
    title: str
    about: str
    data: str
    config: dict[str, Any]
    higher_is_better: dict[str, bool]
    delta_m: str = "per_metric"
    published: tuple[PublishedRow, ...] = ()
    missing: str = ""
    path: str = ""

    def config_dict(self) -> dict[str, Any]:
        """The run's config as a dict (over the defaults), naming this preset."""
        return merge(ExperimentConfig().to_dict(), {**self.config, "benchmark": self.name})

    def experiment(self) -> ExperimentConfig:
        """The run's config (its data root as the preset leaves it: set ``data.root``)."""
        return ExperimentConfig.from_dict(self.config_dict())

    def single_task(self) -> PublishedRow | None:
        """The published single-task row (what Δm is measured against), if the source gives one."""
        return next((r for r in self.published if r.method == SINGLE_TASK), None)

    def row(self, method: str) -> PublishedRow | None:
        """The published row of a weighting method (``ew`` is ``static`` with equal weights)."""
        alias = {"static": "ew"}.get(method, method)
        return next((r for r in self.published if r.method == alias), None)


def _row(d: Any, where: str) -> PublishedRow:
    if not isinstance(d, dict):
        raise ConfigError(where, "expected an object with method, label, citation, source, metrics")
    try:
        metrics = {str(k): float(v) for k, v in d["metrics"].items()}
        return PublishedRow(method=str(d["method"]), label=str(d.get("label") or d["method"]),
                            citation=str(d["citation"]), source=str(d["source"]), metrics=metrics,
                            note=str(d.get("note", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(where, f"a published row needs method, citation, source and numeric metrics ({e})") from None


def parse_preset(d: Any, path: str = "") -> Preset:
    """A preset from its JSON object; a ConfigError naming the file and field when it is malformed.
    Its config must load as an experiment config, and every published row must cite its source."""
    where = path or "preset"
    if not isinstance(d, dict) or "config" not in d or "name" not in d:
        raise ConfigError(where, "a preset is an object with name, title, config, published")
    rows = tuple(_row(r, f"{where}: published[{i}]") for i, r in enumerate(d.get("published") or []))
    for r in rows:
        if not r.citation.strip() or not r.source.strip():
            raise ConfigError(f"{where}: published {r.method}", "every published number needs its citation and source")
    hib = {str(k): bool(v) for k, v in (d.get("higher_is_better") or {}).items()}
    unknown = sorted({k for r in rows for k in r.metrics} - set(hib))
    if unknown:
        raise ConfigError(f"{where}: higher_is_better", f"no direction for {', '.join(unknown)}")
    preset = Preset(name=str(d["name"]), title=str(d.get("title", d["name"])), about=str(d.get("about", "")),
                    data=str(d.get("data", "")), config=dict(d["config"]), higher_is_better=hib,
                    delta_m=str(d.get("delta_m", "per_metric")), published=rows, missing=str(d.get("missing", "")),
                    path=path)
    try:
        preset.experiment()
    except ConfigError as e:
        raise ConfigError(f"{where}: config.{e.field}", e.message) from None
    return preset


@functools.cache
def _presets(directory: str) -> dict[str, Preset]:
    out = {}
    for p in sorted(Path(directory).glob("*.json")):
        preset = parse_preset(json.loads(p.read_text()), str(p))
        out[preset.name] = preset
    return out


def presets() -> dict[str, Preset]:
    """Every preset in ``assets/benchmarks``, by name (read once per process)."""
    return _presets(str(PRESETS_DIR))


def preset_names() -> list[str]:
    """The names of the presets (for ``--config nyuv2`` and a config's ``benchmark``)."""
    return list(presets())


def load_preset(name_or_path: str | Path) -> Preset:
    """A preset by name, or from a file; a clear error listing the presets when it is neither."""
    if str(name_or_path) in presets():
        return presets()[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError("benchmark", f"no preset {str(name_or_path)!r}; presets: {', '.join(preset_names())}")
    try:
        return parse_preset(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), f"not valid JSON ({e})") from None


def config_file(path: str) -> dict[str, Any]:
    """A config file's JSON for ``--config``: an experiment config as Setup saves it, or a preset (a
    path, or the name of one in ``assets/benchmarks``), whose ``config`` is the run's, naming it."""
    file = Path(path)
    if not file.is_file() and path in presets():
        return presets()[path].config_dict()
    if not file.is_file():
        raise ConfigError("--config", f"{path}: no such file (presets: {', '.join(preset_names())})")
    try:
        d = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("--config", f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError("--config", f"{path}: expected a JSON object (a config saved from Setup), got {type(d).__name__}")
    if "published" in d and "config" in d:
        return parse_preset(d, str(file)).config_dict()
    return d


def published_delta_m(values: Mapping[str, float], preset: Preset) -> float | None:
    """Δm (%) of ``values`` against the preset's published single-task row, as its source defines it:
    ``per_metric`` the mean over every metric of the row of ``±(M - M_stl) / M_stl`` (Nash-MTL's
    and CAGrad's ``delta_fn``: each of NYUv2's nine metrics counts once); ``per_task`` the mean
    over tasks of each task's mean over its metrics (LibMTL's ``count_improvement``). Metrics the
    run does not have are left out; ``None`` when none is shared or there is no single-task row."""
    stl = preset.single_task()
    if stl is None:
        return None
    terms: dict[str, list[float]] = {}
    for key, base in stl.metrics.items():
        v = values.get(key)
        if v is None or not math.isfinite(v) or base == 0:
            continue
        sign = 1.0 if preset.higher_is_better.get(key, True) else -1.0
        terms.setdefault(key.split("/", 1)[0], []).append(sign * (float(v) - base) / abs(base) * 100.0)
    if not terms:
        return None
    if preset.delta_m == "per_task":
        return sum(sum(t) / len(t) for t in terms.values()) / len(terms)
    flat = [x for t in terms.values() for x in t]
    return sum(flat) / len(flat)


@dataclass(frozen=True)
class BesideRow:
    """One metric of a run beside the published numbers of its preset."""

    key: str
    ours: float | None
    published: dict[str, float | None] = field(default_factory=dict)  # row label -> value


def beside(values: Mapping[str, float], preset: Preset) -> list[BesideRow]:
    """Every metric the preset publishes, the run's value beside each published row's."""
    keys = list(dict.fromkeys(k for r in preset.published for k in r.metrics))
    return [BesideRow(k, values.get(k), {r.label: r.metrics.get(k) for r in preset.published}) for k in keys]
