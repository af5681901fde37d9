"""The Compress & export page's "Which features each task uses" section, on the tiny shared run."""
from __future__ import annotations

import json
import re

import pytest

from tests.ui.conftest import UI_TASKS, no_exceptions, page


@pytest.fixture
def one_run(twin_runs) -> str:
    return twin_runs["ids"][0]


def test_the_heat_map_and_the_counts_appear_after_the_button(one_run):
    at = page("models", one_run)
    at.run()
    no_exceptions(at)
    assert any("Press **Measure importance**" in c.value for c in at.caption)
    assert not at.get("plotly_chart")
    at.number_input(key="models_importance_batches").set_value(1)
    at.button(key="models_importance_go").click().run()
    no_exceptions(at)
    assert not at.error
    counts = [m.value for m in at.markdown if "channels serve all 4 tasks" in m.value]
    assert len(counts) == 1 and "serve detection only" in counts[0] and "serve no task" in counts[0]
    n = int(re.search(r"of (\d+) channels", counts[0]).group(1))
    (chart,) = at.get("plotly_chart")
    heat = json.loads(chart.proto.spec)["data"][0]
    assert heat["type"] == "heatmap" and heat["y"] == list(UI_TASKS) and len(heat["x"]) == n
    assert sorted(int(c[1:]) for c in heat["x"]) == list(range(n))  # every channel once, sorted for the blocks
    # the layer picker: an earlier stage has its own channels and counts
    layers = at.selectbox(key="models_importance_layer")
    assert layers.value == "features" and "stage1" in layers.options
    layers.set_value("stage1").run()
    no_exceptions(at)
    (chart,) = at.get("plotly_chart")
    m = int(re.search(r"of (\d+) channels", next(x.value for x in at.markdown if "channels serve" in x.value)).group(1))
    assert len(json.loads(chart.proto.spec)["data"][0]["x"]) == m and m != n
