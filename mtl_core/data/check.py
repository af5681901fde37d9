"""What a dataset holds and what is wrong with it, before a run trips over it: the report behind
``python -m mtl_core check-data`` and the Data page."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtl_core.data.base import SPLITS, build_dataset
from mtl_core.data.manifest import assign_splits, find_problems
from mtl_core.data.table import MAX_LINES, Problem, load_table, summary
from mtl_core.errors import MTLError


@dataclass
class DataReport:
    """A dataset as a person checks it: each task column with its kind, how that kind was found,
    and its labels per split; and every problem with its file and row."""

    dataset: str
    source: str
    splits: dict[str, int] = field(default_factory=dict)  # images per split
    tasks: list[dict[str, Any]] = field(default_factory=list)  # {name, kind, how, classes, labels: {split: n}}
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self, limit: int = MAX_LINES) -> str:
        """The report as the CLI prints it: the tasks, then at most ``limit`` problems."""
        lines = [f"{self.dataset} · {self.source}",
                 "images: " + ", ".join(f"{s} {n:,}" for s, n in self.splits.items())]
        for t in self.tasks:
            labels = " / ".join(f"{t['labels'].get(s, 0):,}" for s in SPLITS)
            classes = f", {t['classes']} classes" if t.get("classes") else ""
            lines.append(f"  {t['name']:<20} {t['kind'] or '?':<15} labels {labels} (train/val/test){classes}"
                         + (f"  [{t['how']}]" if t.get("how") else ""))
        if self.problems:
            lines.append(f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:")
            lines.append(summary(self.problems, limit))
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check_data(cfg: Any) -> DataReport:
    """The report for an experiment config's data: a label table is read row by row (only the
    config's task columns, when it names any of them); another dataset is opened split by split."""
    data = cfg.data
    if data.dataset != "manifest":
        report = DataReport(data.dataset, data.root or "built in")
        for split in SPLITS:
            try:
                ds = build_dataset(cfg, split, cfg.seed)
            except MTLError as e:
                report.problems.append(Problem(data.root or data.dataset, 0, "", str(e)))
                continue
            report.splits[split] = len(ds)
            if not report.tasks:
                specs = ds.info.specs  # a dataset's own tasks (CelebA's attributes) say their kind; a built-in is its name
                report.tasks = [{"name": t, "kind": specs[t].kind if t in specs else t, "how": "",
                                 "classes": len(specs[t].classes if t in specs else ds.info.class_names) or None,
                                 "labels": {}} for t in ds.info.tasks]
            for t in report.tasks:
                t["labels"][split] = len(ds)
        return report
    table = load_table(data.root, cfg.task_specs)
    columns = [t for t in cfg.tasks if t in table.columns] or list(table.columns)
    splits, _ = assign_splits(table)
    problems, _bad = find_problems(table, columns)
    report = DataReport("manifest", str(table.path), {s: len(splits[s]) for s in SPLITS}, problems=problems)
    for col in columns:
        spec = table.specs.get(col)
        report.tasks.append({"name": col, "kind": spec.kind if spec else "", "how": table.notes.get(col, ""),
                             "classes": len(spec.classes) if spec and spec.classes else None,
                             "labels": {s: sum(1 for i in splits[s] if table.rows[i].cells.get(col)) for s in SPLITS}})
    return report
