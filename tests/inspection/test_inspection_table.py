"""The error table of a split: one row per sample, its filters and order, the per-task summaries,
how tasks fail together, and its CSV, on hand-made tables."""
from __future__ import annotations

import csv
import io
import math

import pytest
import torch

from mtl_core.data.base import DatasetInfo
from mtl_core.inspection.outputs import SplitOutputs
from mtl_core.inspection.packing import pack
from mtl_core.inspection.table import Condition, co_failure, error_table, filter_rows, sort_rows, summary, to_csv
from mtl_core.tasks import build_task

NAN = float("nan")
INFO = DatasetInfo(name="toy", class_names=("circle", "square"), image_size=8, tasks=("detection", "segmentation"))


def det(rows, labels, scores=None) -> dict:
    out = {"boxes": torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.long)}
    if scores is not None:
        out["scores"] = torch.tensor(scores, dtype=torch.float32)
    return out


def mask(label: int) -> dict:
    return {"mask": torch.full((8, 8), label, dtype=torch.long)}


@pytest.fixture
def tasks() -> dict:
    return {"detection": build_task("detection", INFO), "segmentation": build_task("segmentation", INFO)}


def test_error_table_one_row_per_sample_and_tasks_failed(tasks):
    # sample 10: box found, mask right; 11: box missed, mask wrong; 12: a false box, no mask label
    det_truth = [det([[0, 0, 4, 4]], [0]), det([[0, 0, 4, 4]], [1]), det([], [])]
    det_pred = [det([[0, 0, 4, 4]], [0], [0.9]), det([], [], []), det([[2, 2, 6, 6]], [0], [0.8])]
    seg_truth = [mask(1), mask(1), None]
    seg_pred = [mask(1), mask(2), mask(0)]
    outputs = SplitOutputs(None, "val", 0, tasks, torch.zeros(3, 3, 8, 8, dtype=torch.uint8), [10, 11, 12],
                           {"detection": pack(det_pred), "segmentation": pack(seg_pred)},
                           {"detection": pack(det_truth), "segmentation": pack(seg_truth)})
    table = error_table(outputs, 0.3)
    assert list(table)[:2] == ["sample", "tasks_failed"]
    assert table["sample"] == [10, 11, 12] and table["tasks_failed"] == [0, 2, 1]
    assert table["detection/misses"] == [0.0, 1.0, 0.0] and table["detection/false_positives"] == [0.0, 0.0, 1.0]
    assert table["segmentation/iou"][:2] == [1.0, 0.0] and math.isnan(table["segmentation/iou"][2])
    assert set(table) == {"sample", "tasks_failed"} | {f"{t}/{c.name}" for t, task in tasks.items() for c in task.display.error_columns}
    # at a threshold of 0.85 the box scoring 0.8 is left out, so sample 12 no longer has a false box
    assert error_table(outputs, 0.85)["tasks_failed"] == [0, 2, 0]


TABLE = {
    "sample": [0, 1, 2, 3, 4, 5],
    "detection/misses": [0.0, 2.0, 1.0, NAN, 3.0, 1.0],
    "segmentation/iou": [0.9, 0.4, 0.6, 0.3, NAN, 0.4],
    "classification/truth": ["circle", "square", "", "circle", "square", "circle"],
}


def test_filter_rows_needs_every_condition():
    both = [Condition("detection/misses", ">=", 1), Condition("segmentation/iou", "<=", 0.5)]
    assert filter_rows(TABLE, both) == [1, 5]  # 3 has no detection label, 4 no mask label
    assert filter_rows(TABLE, both[:1]) == [1, 2, 4, 5]
    assert filter_rows(TABLE, []) == [0, 1, 2, 3, 4, 5]
    assert filter_rows(TABLE, [Condition("classification/truth", "==", "circle")]) == [0, 3, 5]
    with pytest.raises(KeyError, match="detection/mises"):
        filter_rows(TABLE, [Condition("detection/mises", ">=", 1)])
    with pytest.raises(ValueError, match="operator"):
        filter_rows(TABLE, [Condition("detection/misses", ">", 1)])
    assert Condition("segmentation/iou", "<=", 0.5).words({"segmentation/iou": "IoU"}) == "IoU ≤ 0.5"


def test_sort_rows_worst_first_unlabelled_last():
    rows = list(range(6))
    # IoU: low is worse; the tie 0.4 keeps dataset order; sample 4 has no value and goes last
    assert sort_rows(TABLE, rows, "segmentation/iou", worse="low") == [3, 1, 5, 2, 0, 4]
    assert sort_rows(TABLE, rows, "segmentation/iou", worst_first=False, worse="low") == [0, 2, 1, 5, 3, 4]
    assert sort_rows(TABLE, rows, "detection/misses", worse="high") == [4, 1, 2, 5, 0, 3]
    assert sort_rows(TABLE, [5, 2, 3], "detection/misses") == [2, 5, 3]  # only the rows asked for


def test_summary_lines(tasks):
    table = {"detection/failed": [1.0, 0.0, 1.0, NAN, 0.0], "detection/misses": [2.0, 0.0, 1.0, NAN, 0.0],
             "segmentation/iou": [0.9, 0.4, 0.6, 0.3, NAN], "segmentation/pixel_error": [NAN] * 5}
    lines = summary(tasks, table)
    assert lines["detection"] == ["any box wrong: 2 of 4 (50.0%)", "missed objects: 3 in all, 0.75 per sample"]
    assert lines["segmentation"] == ["IoU: mean 0.5500, median 0.5000", "wrong pixels: no labelled sample"]


def test_co_failure_shares():
    flags = {"a/failed": [1.0, 1.0, 0.0, 1.0, NAN, 0.0],
             "b/failed": [1.0, 0.0, 0.0, 1.0, 1.0, NAN],
             "c/failed": [0.0] * 6}
    got = co_failure(["a", "b", "c"], flags)
    share, count = got["share"], got["count"]
    assert got["tasks"] == ["a", "b", "c"]
    assert share[0][0] == pytest.approx(3 / 5)  # a failed on 3 of its 5 labelled samples
    assert share[0][1] == pytest.approx(2 / 3) and count[0][1] == 2  # of a's 3 failures b labelled, b failed twice
    assert share[1][0] == 1.0 and count[1][0] == 2  # wherever b failed (and a is labelled) a failed too
    assert share[1][1] == pytest.approx(3 / 5)
    assert share[0][2] == 0.0 and count[0][2] == 0
    assert math.isnan(share[2][0]) and count[2][0] == 0  # c never failed: no share to speak of
    assert share[2][2] == 0.0


def test_csv_header_rows_and_blanks():
    table = {"sample": [10, 11], "tasks_failed": [1, 0], "detection/misses": [1.0, NAN],
             "classification/truth": ["circle, red", ""], "segmentation/iou": [0.123456789, 1 / 3]}
    text = to_csv(table)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["sample", "tasks_failed", "detection/misses", "classification/truth", "segmentation/iou"]
    assert rows[1] == ["10", "1", "1", "circle, red", "0.123457"]
    assert rows[2] == ["11", "0", "", "", "0.333333"]  # no value: a blank cell, never "nan"
    assert len(rows) == 3 and "nan" not in text.lower()
