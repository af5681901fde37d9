"""What a run keeps on disk, by kind: its checkpoints, the Inspect outputs kept beside them (per
split, whoever opened it first), its compressed and exported models. A run's folder goes with
the run when it is deleted, so this is also what a delete frees. No Streamlit."""
from __future__ import annotations

import os
from pathlib import Path

KINDS = ("checkpoints", "Inspect outputs", "compressed models", "exports", "other")


def _kind(rel: Path) -> str:
    if rel.parts[0] == "compressed":
        return "compressed models"
    if rel.parts[0] == "export":
        return "exports"
    if ".inspect-" in rel.name:  # <checkpoint>.inspect-<split>.pt, mtl_core.inspection.outputs.cache_path
        return "Inspect outputs"
    if rel.suffix == ".pt":
        return "checkpoints"
    return "other"


def run_files(run_dir: str | os.PathLike) -> dict[str, int]:
    """Bytes per kind (:data:`KINDS`, those present) under ``run_dir``; empty when it is gone."""
    root = Path(run_dir)
    sizes: dict[str, int] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            try:
                size = path.stat().st_size
            except OSError:  # removed meanwhile
                continue
            kind = _kind(path.relative_to(root))
            sizes[kind] = sizes.get(kind, 0) + size
    return {k: sizes[k] for k in KINDS if k in sizes}
