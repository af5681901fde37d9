"""The Compress & export page, on a run that shares the session's tiny checkpoint."""
from __future__ import annotations

import pytest

from tests.ui.conftest import UI_TASKS, no_exceptions, page


@pytest.fixture
def one_run(twin_runs) -> str:
    return twin_runs["ids"][0]


def test_pruning_shows_size_latency_and_every_tasks_metric_before_and_after(one_run):
    at = page("models", one_run)
    at.run()
    no_exceptions(at)
    assert any("No compressed model yet" in c.value for c in at.caption)
    at.radio(key="models_method").set_value("prune").run()
    at.slider(key="models_amount").set_value(0.5)
    at.number_input(key="models_limit").set_value(16)
    at.button(key="models_compress").click().run()
    no_exceptions(at)
    assert not at.error
    table = at.dataframe[0].value.set_index("measure")
    primaries = {"classification/accuracy ↑", "detection/map50 ↑", "segmentation/miou ↑", "depth/abs_rel ↓"}
    assert len(primaries) == len(UI_TASKS) and primaries <= set(table.index)
    assert {"size on disk (state dict)", "size gzipped", "CPU latency, batch 1 (ms)"} <= set(table.index)
    zeros = table.loc["zero weights (fraction of conv/linear)"]
    assert zeros["before"] == "0.0%" and zeros["after"] == "50.0%" and zeros["change"] == "+50.0 pts"
    # pruned weights are stored dense: the file keeps its size, only the gzipped bytes shrink
    assert table.loc["size on disk (state dict)", "change"] == "+0%"
    assert table.loc["size gzipped", "change"].startswith("-")
    assert table.loc["CPU latency, batch 1 (ms)", "before"].endswith(" ms")
    assert any("compressed model" in b.proto.label for b in at.get("download_button"))
    # the report is kept beside the run: a fresh visit lists it, and the pruned model can be exported
    at = page("models", one_run)
    at.run()
    assert at.dataframe[0].value.set_index("measure").loc["zero weights (fraction of conv/linear)", "after"] == "50.0%"
    assert "pruned model 50%" in at.selectbox(key="models_source").options


def test_torchscript_export_reports_parity_and_offers_the_file(one_run):
    at = page("models", one_run)
    at.run()
    at.radio(key="models_format").set_value("torchscript").run()
    at.button(key="models_export").click().run()
    no_exceptions(at)
    assert len(at.success) == 1 and "matches PyTorch" in at.success[0].value and "max abs diff" in at.success[0].value
    parity = at.dataframe[-1].value
    assert {o.split(".")[0] for o in parity["output"]} == set(UI_TASKS)  # every task's outputs were compared
    assert (parity["max abs diff"] <= 1e-4).all()
    assert any(b.proto.label.startswith("Download ") and b.proto.label.endswith(".pt") for b in at.get("download_button"))


def test_structured_pruning_shows_the_four_models_smaller_and_every_tasks_metric(one_run):
    at = page("models", one_run, timeout=180)
    at.run()
    no_exceptions(at)
    assert "not faster" in at.radio(key="models_method").help  # unstructured pruning says so
    at.slider(key="models_ch_amount").set_value(0.5)
    at.number_input(key="models_ch_steps").set_value(2)
    at.number_input(key="models_limit").set_value(16)
    at.button(key="models_ch_prune").click().run()
    no_exceptions(at)
    assert not at.error
    table = next(d.value for d in at.dataframe if "model" in d.value.columns).set_index("model")
    assert list(table.index) == ["original", "channel-pruned", "fine-tuned", "int8"]
    assert {"classification/accuracy ↑", "detection/map50 ↑", "segmentation/miou ↑", "depth/abs_rel ↓"} <= set(table.columns)
    # half the channels: the parameter count falls by well over half, and the table says so
    change = table.loc["channel-pruned", "parameters"].split("(")[1].rstrip("%)")
    assert int(change) <= -50
    assert table.loc["int8", "size on disk"].endswith("%)") and "-" in table.loc["int8", "size on disk"]
    assert "channel-pruned model 50%" in at.selectbox(key="models_source").options
