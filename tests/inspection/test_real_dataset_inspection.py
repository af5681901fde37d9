"""Inspection on a real dataset on disk (a small COCO json the test writes), where not every image
has every label: an image without objects has no class, an object without a mask leaves its
image unlabelled for segmentation. Such a sample has no error for that task, and is neither
right nor wrong in its summary, filters and matrices."""
from __future__ import annotations

import dataclasses
import math

from tests.conftest import tiny_config
from tests.data.test_coco import make_coco


def test_a_coco_run_is_inspected_with_its_unlabelled_samples_left_out(tmp_path):
    from mtl_core.config import DataConfig
    from mtl_core.data import build_dataset
    from mtl_core.inspection.outputs import split_outputs
    from mtl_core.inspection.table import Condition, error_table, filter_rows, summary
    from mtl_core.runs.manager import get_manager

    make_coco(tmp_path / "coco", n_images=40)
    data = DataConfig(dataset="coco", root=str(tmp_path / "coco"), image_size=32)
    base = tiny_config()
    cfg = tiny_config(name="coco", data=data, tasks=("classification", "detection", "segmentation"),
                      optim=dataclasses.replace(base.optim, steps=2))
    manager = get_manager(tmp_path / "runs")
    run_id = manager.start(cfg)
    assert manager.wait(run_id, timeout=120) == "finished", manager.store.get_run(run_id)["error"]
    ck = manager.store.latest_checkpoint(run_id, "final")["path"]

    out = split_outputs(ck, "val")
    ds = build_dataset(data, "val", cfg.seed)
    assert len(out) == len(ds) > 0
    table = error_table(out)
    for j in range(len(out)):
        _, targets = ds[j]
        valid = targets.get("valid", {})
        for task in ("classification", "segmentation"):
            labelled = bool(valid.get(task, True))
            assert (task in out.truth(j)) == labelled
            assert math.isnan(table[f"{task}/failed"][j]) == (not labelled)
    # every unlabelled classification sample stays out of "only wrong" and out of the summary's count
    wrong = filter_rows(table, [Condition("classification/failed", ">=", 1)])
    assert all(not math.isnan(table["classification/failed"][j]) for j in wrong)
    labelled = sum(1 for v in table["classification/failed"] if not math.isnan(v))
    assert summary(out.tasks, table)["classification"][0].endswith(f"of {labelled} ({len(wrong) / labelled:.1%})")
    matrix = out.confusions("classification")[0]
    assert matrix.total() == labelled
    assert matrix.rows == ["dog", "cat"] or set(matrix.rows) == {"dog", "cat"}
