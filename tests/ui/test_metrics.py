"""ui.metrics and ui.charts on hand-made cases whose right answers are known."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from ui import charts
from ui.metrics import (
    MetricCache,
    delta_m,
    downsample,
    downsample_indices,
    ema,
    final_metrics,
    format_duration,
    pareto_front,
    primary_values,
    rows_to_frame,
)


# -- EMA ---------------------------------------------------------------------------------------
def test_ema_first_point_is_the_first_raw_point_and_follows_tensorboard_by_hand():
    s = ema([1.0, 2.0, 3.0], 0.6)
    assert s[0] == pytest.approx(1.0)  # debiased: no pull towards 0
    assert s[1] == pytest.approx((0.6 * 1 + 2) / (0.6 + 1))  # sum w^i x_{t-i} / sum w^i
    assert s[2] == pytest.approx((0.36 * 1 + 0.6 * 2 + 3) / (0.36 + 0.6 + 1))


def test_ema_keeps_a_constant_series_constant_and_zero_smoothing_is_raw():
    assert np.allclose(ema([5.0] * 50, 0.99), 5.0)
    assert np.array_equal(ema([3.0, 1.0, 2.0], 0.0), [3.0, 1.0, 2.0])


def test_ema_passes_missing_points_through_without_poisoning_the_rest():
    s = ema([1.0, float("nan"), 1.0, 1.0], 0.9)
    assert math.isnan(s[1])
    assert np.allclose(s[[0, 2, 3]], 1.0)


# -- downsampling ------------------------------------------------------------------------------
def test_downsample_keeps_first_last_and_at_most_n_points_and_the_spike():
    x = np.arange(20_000)
    y = np.sin(x / 500.0)
    y[12_345] = 50.0  # a loss spike a person must still see
    xs, ys = downsample(x, y, 1000)
    assert len(xs) <= 1000
    assert xs[0] == 0 and xs[-1] == 19_999
    assert ys[0] == y[0] and ys[-1] == y[-1]
    assert 50.0 in ys
    assert np.all(np.diff(xs) > 0)  # still in step order


def test_downsample_leaves_short_series_alone():
    assert np.array_equal(downsample_indices(np.ones(10), 1000), np.arange(10))


# -- Δm ------------------------------------------------------------------------------------------
def test_delta_m_on_hand_numbers():
    hib = {"classification": True, "depth": False}
    base = {"classification": 0.8, "depth": 0.2}
    # accuracy +10% (better) and abs_rel +10% (worse) cancel out
    assert delta_m({"classification": 0.88, "depth": 0.22}, base, hib) == pytest.approx(0.0, abs=1e-9)
    # both better by 10%: +10
    assert delta_m({"classification": 0.88, "depth": 0.18}, base, hib) == pytest.approx(10.0)
    # the baseline against itself is 0
    assert delta_m(base, base, hib) == pytest.approx(0.0)


def test_delta_m_uses_only_shared_tasks_and_none_when_nothing_is_shared():
    hib = {"classification": True, "segmentation": True}
    assert delta_m({"classification": 0.9, "segmentation": 0.5}, {"classification": 0.6}, hib) == pytest.approx(50.0)
    assert delta_m({"segmentation": 0.5}, {"classification": 0.6}, hib) is None


# -- Pareto --------------------------------------------------------------------------------------
def test_pareto_front_both_higher_is_better():
    x = [1, 2, 3, 2, 0.5]
    y = [3, 2, 1, 1, 0.5]
    assert pareto_front(x, y).tolist() == [True, True, True, False, False]


def test_pareto_front_respects_a_lower_is_better_axis():
    # x: accuracy (higher better), y: depth error (lower better)
    x = [0.9, 0.8, 0.7, 0.9]
    y = [0.30, 0.20, 0.25, 0.35]
    on = pareto_front(x, y, maximize_x=True, maximize_y=False)
    assert on.tolist() == [True, True, False, False]  # (0.7, .25) loses to (0.8, .20); (0.9, .35) to (0.9, .30)


def test_pareto_front_ignores_missing_points():
    assert pareto_front([1.0, float("nan")], [1.0, 5.0]).tolist() == [True, False]


# -- final metrics -------------------------------------------------------------------------------
def test_final_metrics_prefers_test_then_the_last_validation():
    val = [(5, "val", "classification/accuracy", 0.5, 0.0), (10, "val", "classification/accuracy", 0.7, 0.0)]
    test = [(10, "test", "classification/accuracy", 0.65, 0.0)]
    assert final_metrics(val) == ({"classification/accuracy": 0.7}, "val")
    assert final_metrics(val + test) == ({"classification/accuracy": 0.65}, "test")
    assert final_metrics([]) == ({}, None)
    assert primary_values({"classification/accuracy": 0.7, "loss/classification": 1.0},
                          {"classification": "accuracy", "depth": "abs_rel"}) == {"classification": 0.7}


def test_rows_to_frame_and_durations():
    df = rows_to_frame([(1, "train", "loss/a", 0.5, 0.0), (2, "train", "loss/a", None, 0.0)])
    assert list(df.columns) == ["step", "split", "key", "value", "wall"]
    assert math.isnan(df["value"].iloc[1])
    assert format_duration(75) == "1m 15s" and format_duration(3725) == "1h 02m" and format_duration(None) == "–"


# -- the incremental metric cache ----------------------------------------------------------------
class FakeStore:
    """What MetricCache reads of a RunStore: rows in the order written (row id = position + 1)
    and the run's metrics history, which a removal of rows bumps."""

    def __init__(self):
        self.rows = []
        self.history = 0
        self.reads = []  # (after_id, rows returned) of each metrics_after

    def metrics_history(self, run_id):
        return self.history

    def metrics_after(self, run_id, after_id=0, limit=None):
        new = self.rows[after_id:]
        self.reads.append((after_id, len(new)))
        return new, len(self.rows) if new else after_id


def test_metric_cache_reads_only_new_rows_and_catches_late_rows_of_the_last_step():
    store = FakeStore()
    store.rows += [(s, "train", "loss/a", float(s), 0.0) for s in range(1, 101)]
    cache = MetricCache("r")
    assert cache.update(store) == 100
    store.rows.append((100, "val", "a/acc", 0.5, 0.0))  # validation of step 100 lands after its training rows
    store.rows += [(101, "train", "loss/a", 101.0, 0.0)]
    cache.update(store)
    assert store.reads[-1] == (100, 2)  # only the two new rows were read
    steps, values = cache.get("train", "loss/a")
    assert steps.tolist() == list(range(1, 102)) and values[-1] == 101.0
    assert cache.get("val", "a/acc")[1].tolist() == [0.5]
    assert cache.update(store) == 0  # nothing new: nothing read again
    assert store.reads[-1] == (102, 0)


def test_metric_cache_starts_over_when_a_resumed_run_rewrites_its_history():
    store = FakeStore()
    store.rows += [(s, "train", "loss/a", 1.0, 0.0) for s in range(1, 11)]
    cache = MetricCache("r")
    cache.update(store)
    store.rows = [r for r in store.rows if r[0] <= 5] + [(6, "train", "loss/a", 9.0, 0.0)]  # resumed from step 5
    store.history += 1
    cache.update(store)
    steps, values = cache.get("train", "loss/a")
    assert steps.tolist() == [1, 2, 3, 4, 5, 6] and values[-1] == 9.0


def test_metric_cache_puts_a_late_row_of_an_earlier_step_in_its_place():
    store = FakeStore()
    store.rows += [(s, "train", "loss/a", float(s), 0.0) for s in (1, 2, 4)]
    cache = MetricCache("r")
    cache.update(store)
    assert cache.get("train", "loss/a")[0].tolist() == [1, 2, 4]
    store.rows += [(3, "train", "loss/a", 3.0, 0.0), (5, "train", "loss/a", 5.0, 0.0)]
    assert cache.update(store) == 2
    steps, values = cache.get("train", "loss/a")
    assert steps.tolist() == [1, 2, 3, 4, 5] and values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert cache.last_step == 5 and cache.count == 5


# -- figures ---------------------------------------------------------------------------------------
def _cache_with_run():
    store = FakeStore()
    for s in range(1, 3001):
        store.rows += [(s, "train", "loss/a", 1.0 + 1.0 / s, 0.0), (s, "train", "weight/a", 1.0 if s < 1500 else 2.0, 0.0),
                       (s, "train", "loss/total", 1.0, 0.0)]
        if s % 500 == 0:
            store.rows += [(s, "val", "a/acc", s / 3000, 0.0), (s, "val", "a/top3", 1.0, 0.0), (s, "val", "loss/a", 1.0, 0.0)]
    cache = MetricCache("r")
    cache.update(store)
    return cache


EVENTS = [{"step": 1500, "kind": "weights", "payload": {"old": {"a": 1.0}, "new": {"a": 2.0}}}]


def test_task_figure_has_raw_and_smoothed_curves_val_metrics_and_the_weight_change_marked():
    fig = charts.task_figure(_cache_with_run(), charts.TaskMeta("a", "acc", True, "Task A"), 0.9, True, EVENTS)
    go.Figure(fig.to_dict())  # every property is valid plotly (the figure was built unvalidated)
    names = [tr.name for tr in fig.data]
    assert names[:2] == ["train (raw)", "train"]
    assert "acc↑" in names and "top3" in names and "val" in names
    assert all(len(tr.x) <= charts.MAX_POINTS for tr in fig.data)
    raw, smooth = fig.data[0], fig.data[1]
    assert np.std(np.diff(smooth.y)) <= np.std(np.diff(raw.y))
    assert fig.layout.yaxis.type == "log"
    assert [s.x0 for s in fig.layout.shapes] == [1500]
    assert "a 1→2" in fig.layout.annotations[0].text


def test_weights_and_pareto_figures_are_valid_and_show_what_they_should():
    cache = _cache_with_run()
    wf = charts.weights_figure(cache, ["a"], EVENTS)
    go.Figure(wf.to_dict())
    assert wf.data[0].y[0] == 1.0 and wf.data[0].y[-1] == 2.0
    pf = charts.pareto_figure(["r1", "r2", "r3"], [0.9, 0.8, 0.7], [0.3, 0.2, 0.25], "acc", "abs_rel",
                              True, False, highlight="r1")
    go.Figure(pf.to_dict())
    front = next(tr for tr in pf.data if tr.name == "on the front")
    assert sorted(front.text) == ["r1", "r2"]
    cf = charts.compare_figure({"r1": (np.arange(10), np.ones(10)), "r2": (np.arange(5), np.zeros(5))}, "loss", 0.5)
    go.Figure(cf.to_dict())
    assert {tr.name for tr in cf.data} >= {"r1", "r2"}


def test_a_panel_before_the_first_evaluation_keeps_its_loss_axis_on_the_loss():
    # a note placed on the (still empty) validation axes would be laid out in the loss axis'
    # data coordinates and stretch it to include (0.5, 0.5): the curve then hugs the top edge
    store = FakeStore()
    store.rows += [(s, "train", "loss/a", 1.3 + 0.01 * (s % 3), 0.0) for s in range(1, 30)]
    cache = MetricCache("r")
    cache.update(store)
    fig = charts.task_figure(cache, charts.TaskMeta("a", "acc"), 0.6)
    go.Figure(fig.to_dict())
    note = next(a for a in fig.layout.annotations if "first evaluation" in a.text)
    assert (note.xref, note.yref) == ("paper", "paper")
    assert any(tr.yaxis == "y2" for tr in fig.data)  # the lower panel and its step axis are still drawn


def test_a_weights_chart_of_forty_tasks_names_them_on_hover_not_in_a_legend():
    from ui.metrics import MetricCache

    tasks = [f"attr_{k:02d}" for k in range(40)]
    cache = MetricCache("r")
    for t in tasks:
        cache.series[("train", f"weight/{t}")] = ([0, 1], [1.0, 1.0])
    many = charts.weights_figure(cache, tasks)
    few = charts.weights_figure(cache, tasks[:3])
    assert len(many.data) == 40 and many.layout.showlegend is False
    assert few.layout.showlegend is not False
