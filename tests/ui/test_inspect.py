"""The Inspect page, driven with Streamlit's AppTest on the session's tiny finished run: the error
browser's filters agree with the error table, a click opens a sample with its error drawings, a
confusion cell lists its samples, the curves are drawn, and two runs share one image."""
from __future__ import annotations

import json
import re

import pytest

from tests.ui.conftest import no_exceptions, page


@pytest.fixture
def outputs(ui_runs):
    """The tiny run's validation outputs, as the page computes them (and keeps beside the checkpoint)."""
    from mtl_core.inspection.outputs import split_outputs

    store = ui_runs["manager"].store
    ck = store.latest_checkpoint(ui_runs["run_id"], "final")
    return split_outputs(ck["path"], "val"), ck["path"]


def opened(run_id):
    at = page("inspect", run_id, timeout=120)
    at.run()
    no_exceptions(at)
    return at


def shown_count(at) -> int:
    line = next(m.value for m in at.markdown if re.match(r"\*\*\d+\*\* of \d+ samples", m.value))
    return int(re.match(r"\*\*(\d+)\*\*", line).group(1))


def sample_ids(at) -> list[int]:
    """The dataset indices of the thumbnails shown, in the grid's reading order, from their
    captions ("**#17** · ..."); the element tree lists a grid column by column."""
    from ui.inspect_view import COLUMNS

    found = [int(m.group(1)) for c in at.caption if (m := re.match(r"\*\*#(\d+)\*\*", c.value))]
    n = len(found)
    per_column = [len(range(k, n, COLUMNS)) for k in range(COLUMNS)]
    columns, start = [], 0
    for size in per_column:
        columns.append(found[start:start + size])
        start += size
    return [columns[i % COLUMNS][i // COLUMNS] for i in range(n)]


def test_the_browser_lists_every_sample_worst_first_and_keeps_the_outputs_beside_the_checkpoint(ui_runs, outputs):
    from mtl_core.inspection.outputs import cache_path
    from mtl_core.inspection.table import error_table

    out, ck = outputs
    at = opened(ui_runs["run_id"])
    assert cache_path(ck, "val").is_file()
    assert shown_count(at) == len(out) == 32
    ids = sample_ids(at)
    assert len(ids) == 18  # one page of thumbnails
    failed = dict(zip(error_table(out)["sample"], error_table(out)["tasks_failed"], strict=True))
    assert [failed[i] for i in ids] == sorted((failed[i] for i in ids), reverse=True)  # worst first
    assert max(failed[i] for i in ids) == max(failed.values())
    csv = at.get("download_button")[0]
    assert "CSV" in csv.proto.label


def test_two_filters_keep_exactly_the_samples_the_table_says(ui_runs, outputs):
    from mtl_core.inspection.table import Condition, error_table, filter_rows

    out, _ = outputs
    table = error_table(out)
    expected = filter_rows(table, [Condition("detection/misses", ">=", 1), Condition("segmentation/iou", "<=", 0.9)])
    at = opened(ui_runs["run_id"])
    at.number_input(key="inspect_f_detection_misses").set_value(1)
    at.slider(key="inspect_f_segmentation_iou").set_value(0.9)
    at.run()
    no_exceptions(at)
    assert shown_count(at) == len(expected)
    assert set(sample_ids(at)) <= {table["sample"][j] for j in expected}
    text = next(m.value for m in at.markdown if "samples with" in m.value)
    assert "missed objects ≥ 1" in text and "IoU ≤ 0.9" in text


def test_open_shows_the_sample_large_with_each_tasks_errors(ui_runs):
    at = opened(ui_runs["run_id"])
    first = sample_ids(at)[0]
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("inspect_grid_open_"))).click()
    at.run()
    no_exceptions(at)
    assert at.segmented_control(key="inspect_view").value == "sample"
    captions = [im.captions[0] for im in at.image]
    assert captions[:3] == ["Ground truth", "Prediction", "Errors"]
    assert "Depth error" in captions and "True depth" in captions
    lines = next(m.value for m in at.markdown if "Detection:" in m.value)
    assert "Classification:" in lines and "Segmentation: IoU" in lines
    assert any(f"#{first}" in m.value or at.number_input[0].value == first for m in at.markdown)
    # the top answers of classification, with the truth named
    assert any(c.key.startswith("inspect_large_top_classification") for c in at.get("plotly_chart"))
    # toggling a task off takes its line away
    at.pills(key="inspect_show").set_value(["classification", "segmentation", "depth"]).run()
    assert not any("Detection:" in m.value for m in at.markdown)


def test_a_confusion_cell_lists_the_samples_in_it(ui_runs, outputs):
    out, _ = outputs
    matrix = out.confusions("classification")[0]
    r, c = max(((r, c) for r in range(len(matrix.rows)) for c in range(len(matrix.cols)) if r != c),
               key=lambda rc: matrix.counts[rc[0]][rc[1]])
    at = opened(ui_runs["run_id"])
    at.segmented_control(key="inspect_view").set_value("confusion").run()
    no_exceptions(at)
    chart = next(ch for ch in at.get("plotly_chart") if ch.key.startswith("inspect_cm_chart_classification"))
    spec = json.loads(chart.proto.spec)
    assert spec["data"][0]["type"] == "heatmap" and spec["data"][0]["y"] == matrix.rows
    assert spec["data"][0]["z"][r][c] == matrix.counts[r][c]
    key = "inspect_cm_cell_classification_0"
    at.selectbox(key=f"{key}_r").set_value(r)
    at.selectbox(key=f"{key}_c").set_value(c)
    at.run()
    no_exceptions(at)
    text = next(m.value for m in at.markdown if "with truth" in m.value)
    assert text.startswith(f"**{matrix.counts[r][c]:,} samples**") and matrix.rows[r] in text
    assert sample_ids(at) == [out.indices[j] for j in matrix.samples.get((r, c), [])][:12]
    # row shares: every non-empty row sums to 1
    at.toggle(key="inspect_cm_norm").set_value(True).run()
    chart = next(ch for ch in at.get("plotly_chart") if ch.key.startswith("inspect_cm_chart_classification"))
    z = json.loads(chart.proto.spec)["data"][0]["z"]
    assert all(abs(sum(row) - 1) < 1e-9 for row, counts in zip(z, matrix.counts, strict=True) if sum(counts))
    # detection has a background row and column
    at.selectbox(key="inspect_cm_task").set_value("detection").run()
    no_exceptions(at)
    chart = next(ch for ch in at.get("plotly_chart") if ch.key.startswith("inspect_cm_chart_detection"))
    data = json.loads(chart.proto.spec)["data"][0]
    assert data["y"][-1] == "background" and data["x"][-1].startswith("background")


def test_curves_draw_detection_precision_recall_and_a_reliability_diagram(ui_runs):
    at = opened(ui_runs["run_id"])
    at.segmented_control(key="inspect_view").set_value("curves").run()
    no_exceptions(at)
    keys = [c.key for c in at.get("plotly_chart")]
    assert "inspect_pr_detection" in keys and "inspect_rel_classification" in keys
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "inspect_pr_detection").proto.spec)
    assert any("AP50" in (t.get("name") or "") for t in spec["data"])


def test_two_runs_side_by_side_on_one_sample_and_on_an_upload(twin_runs):
    from tests.ui.test_predict import png_bytes

    at = page("inspect", twin_runs["ids"][0], timeout=120)
    at.run()
    at.segmented_control(key="inspect_view").set_value("compare").run()
    no_exceptions(at)
    assert at.multiselect(key="inspect_runs").value == twin_runs["ids"]
    errors = [im for im in at.image if im.captions[0] == "Errors"]
    assert len(errors) == 2  # one per run, the same model: the same drawing
    assert any("errors against its ground truth" in c.value for c in at.caption)
    at.radio(key="inspect_cmp_source").set_value("upload").run()
    at.file_uploader(key="inspect_cmp_upload").set_value(("photo.png", png_bytes(), "image/png")).run()
    no_exceptions(at)
    assert [im.captions[0] for im in at.image].count("Prediction") == 2
    assert not any(im.captions[0] == "Errors" for im in at.image)
    assert any("predictions only" in c.value for c in at.caption)


def test_a_run_without_a_checkpoint_says_so(runs_dir):
    at = page("inspect")
    at.run()
    no_exceptions(at)
    assert any("No trained run" in i.value for i in at.info)


def test_forty_tasks_word_a_chosen_few_under_each_thumbnail(tmp_path, monkeypatch):
    from mtl_core.config import ExperimentConfig
    from mtl_core.store.store import RunStore
    from mtl_core.training.loop import Trainer
    from mtl_core.training.validation import check
    from tests.label_tables import split_of, write_table

    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path / "runs"))
    attrs = [f"attr_{k:02d}" for k in range(40)]
    rows = [{"image": f"i/{i}.png", "split": split_of(i), **{a: str((i + k) % 2) for k, a in enumerate(attrs)}}
            for i in range(16)]
    cfg = check(ExperimentConfig.from_dict({
        "tasks": attrs, "data": {"dataset": "manifest", "root": str(write_table(tmp_path, rows)), "image_size": 32},
        "model": {"width": 4}, "optim": {"batch_size": 4, "steps": 2, "warmup_steps": 0}, "eval_every": 2,
        "first_eval": 0, "checkpoint_every": 0, "gradstats_every": 0, "device": "cpu"}))
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(cfg.to_dict(), "forty", "test", 2)
    Trainer(cfg, store, run_id).run()
    at = opened(run_id)
    assert at.multiselect(key="inspect_show_many").value == attrs[:4]
    words = [c.value for c in at.caption if "Attr " in c.value and "(truth" in c.value]
    assert words and all("Attr 04" not in w for w in words)  # only the chosen four are worded
    at.multiselect(key="inspect_show_many").set_value(["attr_39"]).run()
    no_exceptions(at)
    words = [c.value for c in at.caption if "Attr " in c.value and "(truth" in c.value]
    assert words and all("Attr 39" in w and "Attr 00" not in w for w in words)
