"""ui/live_plot.py: charts that redraw in place (one identity per key), and their fallback."""
from __future__ import annotations

import base64
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from ui import live_plot
from ui.charts import figure


def _values(array) -> list:
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def test_the_figure_json_keeps_the_data_and_takes_the_dashboard_look():
    fig = figure([{"type": "scatter", "x": np.arange(5), "y": np.linspace(1.0, 0.2, 5), "name": "train"}],
                 {"title": {"text": "Depth"}, "height": 300})
    spec = json.loads(live_plot.figure_json(fig))
    trace = spec["data"][0]
    assert _values(trace["x"]) == [0, 1, 2, 3, 4]
    assert _values(trace["y"]) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert spec["layout"]["height"] == 300 and spec["layout"]["title"]["text"] == "<b>Depth</b>"
    assert spec["layout"]["template"] == live_plot.TEMPLATE  # a few lines, not plotly's 8 kB default
    assert fig.layout.title.text == "Depth"  # the (memoised, shared) figure itself is not changed
    go.Figure(spec)  # and it is valid plotly


def test_plotly_js_is_placed_once_under_its_version(tmp_path):
    assert live_plot.ensure_plotly_js(tmp_path)
    placed = tmp_path / live_plot.plotly_file()
    assert placed.read_bytes()[:200].lstrip().startswith(b"/**") and placed.stat().st_size > 1_000_000
    stamp = placed.stat().st_mtime_ns
    assert live_plot.ensure_plotly_js(tmp_path) and placed.stat().st_mtime_ns == stamp  # not copied again
    placed.write_bytes(b"half a file")  # an interrupted copy by someone else is replaced
    assert live_plot.ensure_plotly_js(tmp_path) and placed.stat().st_size > 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == [placed.name]  # no partial files left behind


def test_an_unwritable_static_folder_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    assert live_plot.ensure_plotly_js(blocker / "static") is False


def _app():
    import numpy as np
    import streamlit as st

    from ui.charts import figure
    from ui.live_plot import live_chart

    n = st.session_state.get("n", 3)
    live_chart(figure([{"type": "scatter", "x": np.arange(n), "y": np.arange(n) * 2.0}], {"height": 200}), key="loss")


def _component_charts(at) -> list:
    return [c for c in at.get("bidi_component") if c.proto.component_name == live_plot.COMPONENT]


def test_a_chart_keeps_its_identity_when_its_figure_changes():
    """What lets the browser redraw it in place: st.plotly_chart's identity follows the figure."""
    from streamlit.testing.v1 import AppTest

    live_plot._renderer.clear()
    at = AppTest.from_function(_app).run()
    assert not at.exception
    first = _component_charts(at)
    assert len(first) == 1 and not at.get("plotly_chart")
    at.session_state["n"] = 7
    at.run()
    later = _component_charts(at)
    assert later[0].proto.id == first[0].proto.id and later[0].proto.id.endswith("-loss")
    spec = json.loads(json.loads(later[0].proto.json))
    assert _values(spec["data"][0]["x"]) == list(range(7))


def test_without_static_serving_the_chart_falls_back_to_st_plotly_chart(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(live_plot, "ensure_plotly_js", lambda *a, **k: False)
    live_plot._renderer.clear()
    try:
        at = AppTest.from_function(_app).run()
        assert not at.exception and not _component_charts(at)
        charts = at.get("plotly_chart")
        assert len(charts) == 1 and json.loads(charts[0].proto.spec)["layout"]["height"] == 200
    finally:
        live_plot._renderer.clear()
