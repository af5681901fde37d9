"""The Live training page, driven with Streamlit's AppTest."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from mtl_core.weights import WEIGHT_MAX, WEIGHT_MIN
from tests.conftest import tiny_config
from tests.ui.conftest import UI_TASKS, no_exceptions, page


@dataclasses.dataclass
class Chart:
    key: str
    spec: dict


def charts(at) -> list[Chart]:
    """The page's charts, drawn by ui.live_plot's component (or st.plotly_chart where it falls back)."""
    from ui.live_plot import COMPONENT

    out = [Chart(c.key, json.loads(c.proto.spec)) for c in at.get("plotly_chart")]
    for c in at.get("bidi_component"):
        if c.proto.component_name == COMPONENT:  # id "$$ID-<hash>-<key>"; data: the figure's JSON as a string
            out.append(Chart(c.proto.id.split("-", 2)[2], json.loads(json.loads(c.proto.json))))
    return out


def values(array) -> list:
    """A trace's coordinates from a figure's JSON (plotly writes numpy arrays as typed base64)."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def test_a_finished_run_shows_its_status_curves_and_final_metrics(ui_runs):
    at = page("live", ui_runs["run_id"])
    at.run()
    no_exceptions(at)
    assert any("tiny-ui" in m.value and "finished" in m.value for m in at.markdown)
    # total loss, task weights, one panel per task, and the engine's gradient statistics (its
    # first step records them): cosine matrix, cosines over time and gradient norms
    assert len(charts(at)) == 2 + len(UI_TASKS) + 3
    assert [b.key for b in at.button] == [f"live_notes_save_{ui_runs['run_id']}"]  # nothing to pause or stop
    final = at.dataframe[0].value
    assert set(final["task"]) == set(UI_TASKS) and (final["metric"] == "abs_rel").any()
    # the smoothing slider and the log toggle redraw without errors
    at.slider(key="live_smoothing").set_value(0.9).run()
    at.toggle(key="live_log_y").set_value(True).run()
    no_exceptions(at)
    assert len(charts(at)) == 2 + len(UI_TASKS) + 3


def test_a_run_trained_by_another_process_shows_and_is_steered_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    cfg = tiny_config(name="from-cli").to_dict()
    run_id = store.create_run(cfg, "from-cli", "cli", 100, status="running")
    store.heartbeat(run_id, "gpu-node-3", 4242)  # alive, trained by another process on another host
    store.update_progress(run_id, 40, {"images_per_s": 321.0, "eta_s": 75.0})
    store.log_metrics(run_id, [(s, "train", "loss/classification", 2.0 - s / 50, 0.0) for s in range(1, 41)])
    store.add_event(run_id, 20, "weights", {"old": {"classification": 1.0}, "new": {"classification": 2.0}})
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert any("trained on host gpu-node-3 · pid 4242" in c.value for c in at.caption)
    bar = at.get("progress")[0].proto
    assert bar.value == 40 and "ETA 1m 15s" in bar.text and "321 images/s" in bar.text
    figs = {c.key: c.spec for c in charts(at)}
    fig = figs[f"live_task_{run_id}_classification"]
    assert [tr.get("name") for tr in fig["data"]][:2] == ["train (raw)", "train"]
    # the weight change at step 20 is marked on the curve
    assert [sh["x0"] for sh in fig["layout"]["shapes"]] == [20]
    assert "1→2" in fig["layout"]["annotations"][0]["text"]
    # its controls send commands that its own trainer will read
    at.button(key=f"live_pause_{run_id}").click().run()
    no_exceptions(at)
    assert [(c["kind"], c["state"]) for c in store.commands(run_id)] == [("pause", "pending")]
    # the sliders start at the weights in force (the config's, then the change at step 20), on
    # the range Setup and validation use
    weights = {s.key: s for s in at.slider if s.key and s.key.startswith(f"live_w_{run_id}_")}
    assert weights[f"live_w_{run_id}_classification"].value == 2.0
    assert {(w.min, w.max) for w in weights.values()} == {(WEIGHT_MIN, WEIGHT_MAX)}
    at.slider(key=f"live_w_{run_id}_segmentation").set_value(3.0)
    at.button(key=f"FormSubmitter:live_weights_{run_id}-Apply").click().run()
    assert store.commands(run_id)[-1]["payload"] == {"weights": {"classification": 2.0, "detection": 1.0,
                                                                 "segmentation": 3.0}}


def test_a_method_that_sets_its_own_weights_offers_no_sliders_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    cfg = tiny_config(name="uw").to_dict()
    cfg["weighting"]["method"] = "uw"
    run_id = store.create_run(cfg, "uw", "cli", 100, status="running")
    store.heartbeat(run_id, "here", 1)
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert not [s for s in at.slider if s.key and s.key.startswith("live_w_")]
    assert any("uw does not use weights set by a person" in c.value and "log-variance" in c.value for c in at.caption)


def test_a_failed_run_shows_the_reason_and_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    run_id = store.create_run(tiny_config(name="broken").to_dict(), "broken", "dashboard", 10, status="running")
    store.set_status(run_id, "failed", error="the detection loss became nan at step 3; lower the learning rate",
                     traceback="Traceback (most recent call last):\n  File engine.py ...\nTrainingFailed: nan")
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert any("failed" in m.value for m in at.markdown)
    assert len(at.error) == 1 and "detection loss became nan" in at.error[0].value
    assert at.expander[0].label == "Traceback" and "TrainingFailed" in at.expander[0].code[0].value


@pytest.fixture
def active_run(tmp_path, monkeypatch):
    """A long run trained by this process's RunManager (the one the page uses); stopped afterwards."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.runs.manager import get_manager

    manager = get_manager(tmp_path)
    cfg = tiny_config(name="long", optim=dataclasses.replace(tiny_config().optim, steps=100_000), eval_every=10_000,
                      checkpoint_every=0)
    run_id = manager.start(cfg)
    wait_for(lambda: manager.store.get_run(run_id)["status"] == "running")
    yield manager, run_id
    if manager.is_active(run_id):
        manager.stop(run_id)
    manager.wait(run_id, timeout=60)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_pause_resume_and_stop_act_on_an_active_run(active_run):
    manager, run_id = active_run
    status = lambda: manager.store.get_run(run_id)["status"]  # noqa: E731
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    at.button(key=f"live_pause_{run_id}").click().run()
    wait_for(lambda: status() == "paused")
    at.run()
    assert any("paused" in m.value for m in at.markdown)
    at.button(key=f"live_resume_{run_id}").click().run()
    wait_for(lambda: status() == "running")
    # new weights are sent to the trainer and recorded as an event
    at.run()
    at.slider(key=f"live_w_{run_id}_segmentation").set_value(2.5)
    at.button(key=f"FormSubmitter:live_weights_{run_id}-Apply").click().run()
    no_exceptions(at)
    wait_for(lambda: manager.store.events(run_id, kind="weights"))
    assert manager.store.events(run_id, kind="weights")[-1]["payload"]["new"]["segmentation"] == 2.5
    at.run()
    at.button(key=f"live_stop_{run_id}").click().run()
    assert manager.wait(run_id, timeout=60) == "stopped"
    at.run()
    no_exceptions(at)
    assert any("stopped" in m.value for m in at.markdown)
    assert not any(b.key and b.key.startswith(("live_pause", "live_stop")) for b in at.button)


GRAD_TASKS = ("classification", "depth", "segmentation")


def grad_run(store, every: int = 50, with_stats: bool = True, tasks=GRAD_TASKS) -> str:
    """A finished run with losses for 120 steps and, every ``every`` steps, gradient statistics
    whose last record (step 101) is known: classification and depth conflict (-0.4)."""
    cfg = dataclasses.replace(tiny_config(name="grads", tasks=tasks), gradstats_every=every).to_dict()
    run_id = store.create_run(cfg, "grads", "cli", 120, status="running")
    rows = [(s, "train", f"loss/{t}", 1.0 / s, 0.0) for s in range(1, 121) for t in tasks]
    if with_stats:
        for s, (cd, cs, ds) in {1: (0.5, 0.5, 0.5), 51: (0.1, 0.4, 0.8), 101: (-0.4, 0.3, 0.9)}.items():
            rows += [(s, "train", "gradcos/classification|depth", cd, 0.0),
                     (s, "train", "gradcos/classification|segmentation", cs, 0.0),
                     (s, "train", "gradcos/segmentation|depth", ds, 0.0),  # the engine's order need not be ours
                     (s, "train", "gradnorm/classification", 2.0 / s, 0.0), (s, "train", "gradnorm/depth", 0.01, 0.0),
                     (s, "train", "gradnorm/segmentation", 0.5, 0.0)]
    store.log_metrics(run_id, rows)
    store.update_progress(run_id, 120)
    store.set_status(run_id, "finished")
    return run_id


def test_gradient_conflict_shows_the_latest_cosine_matrix_and_the_cosines_over_time(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    run_id = grad_run(RunStore(tmp_path))
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert any("Gradient conflict" in m.value for m in at.markdown)
    assert any("every 50 steps" in c.value and "(101)" in c.value for c in at.caption)
    figs = {c.key: c.spec for c in charts(at)}
    heat = figs[f"live_gradcos_matrix_{run_id}"]
    cells = heat["data"][0]
    assert cells["type"] == "heatmap" and (cells["zmin"], cells["zmax"]) == (-1, 1)
    assert cells["y"] == ["Classification", "Depth", "Segmentation"]
    assert cells["z"] == [[1.0, -0.4, 0.3], [-0.4, 1.0, 0.9], [0.3, 0.9, 1.0]]  # step 101, not an earlier one
    assert cells["text"][0][1] == "-0.40" and "step 101" in heat["layout"]["title"]["text"]
    scale = cells["colorscale"]
    assert scale[0][1] != scale[-1][1] and scale[len(scale) // 2][1] == "rgb(247,247,247)"  # diverging, white at 0
    over_time = figs[f"live_gradcos_{run_id}"]
    lines = {tr["name"]: tr for tr in over_time["data"] if "(raw)" not in tr["name"]}
    assert set(lines) == {"Classification ↔ Depth", "Classification ↔ Segmentation", "Depth ↔ Segmentation"}
    assert values(lines["Classification ↔ Depth"]["x"]) == [1, 51, 101]
    assert any(sh["type"] == "line" and sh["y0"] == sh["y1"] == 0 for sh in over_time["layout"]["shapes"])
    norms = figs[f"live_gradnorm_{run_id}"]
    assert {tr["name"] for tr in norms["data"]} == {"Classification", "Depth", "Segmentation"}
    assert norms["layout"]["yaxis"]["type"] == "log"  # 0.01 beside 2.0: orders of magnitude apart


def test_gradient_conflict_says_when_there_are_no_statistics_yet(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    none_yet = grad_run(store, every=200, with_stats=False)
    at = page("live", none_yet)
    at.run()
    no_exceptions(at)
    assert any(c.value == "Gradient statistics every 200 steps; none yet." for c in at.caption)
    assert not [c for c in charts(at) if "grad" in c.key]
    single = grad_run(store, tasks=("depth",))  # one task: nothing can conflict, and nothing is said
    at = page("live", single)
    at.run()
    no_exceptions(at)
    assert not any("Gradient" in m.value for m in at.markdown) and not any("Gradient" in c.value for c in at.caption)


def test_the_conflict_figures_follow_new_statistics_and_are_reused_between_them(tmp_path):
    """A refresh with only new losses keeps the conflict figures; a new statistic redraws them."""
    from mtl_core.store.store import RunStore
    from mtl_core.training.gradstats import cosine_matrix
    from ui.live_view import live_figures
    from ui.metrics import MetricCache

    store = RunStore(tmp_path)
    run_id = grad_run(store)
    cache = MetricCache(run_id)
    first = live_figures(store, run_id, 0.6, False, cache, None, cosine_matrix)
    assert first.grad_step == 101
    store.log_metrics(run_id, [(121, "train", "loss/depth", 0.5, 0.0)])
    losses_only = live_figures(store, run_id, 0.6, False, cache, None, cosine_matrix)
    assert losses_only.figures["gradcos_matrix"] is first.figures["gradcos_matrix"]
    assert losses_only.figures["task:depth"] is not first.figures["task:depth"]
    store.log_metrics(run_id, [(151, "train", "gradcos/classification|depth", 0.7, 0.0),
                               (151, "train", "gradcos/classification|segmentation", -0.2, 0.0),
                               (151, "train", "gradcos/segmentation|depth", 0.1, 0.0)])
    later = live_figures(store, run_id, 0.6, False, cache, None, cosine_matrix)
    assert later.grad_step == 151
    z = later.figures["gradcos_matrix"].data[0].z
    assert [list(row) for row in z] == [[1.0, 0.7, -0.2], [0.7, 1.0, 0.1], [-0.2, 0.1, 1.0]]


def test_a_run_of_a_study_links_back_to_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    run_id = store.create_run(tiny_config(name="a trial").to_dict(), "a trial", "study", 10, status="finished",
                              tags={"study": "study-x", "label": "weighting.method=pcgrad", "seed": 2, "role": "trial"})
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert any("[study-x](/studies?study=study-x)" in m.value and "weighting.method=pcgrad, seed 2" in m.value
               for m in at.markdown)


def test_a_run_of_forty_tasks_shows_a_table_of_them_all_and_charts_a_chosen_few(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    attrs = [f"attr_{k:02d}" for k in range(40)]
    store = RunStore(tmp_path)
    cfg = tiny_config(name="forty").to_dict()
    cfg["tasks"] = attrs
    cfg["task_specs"] = {a: {"kind": "binary", "column": a} for a in attrs}
    run_id = store.create_run(cfg, "forty", "cli", 10, status="finished")
    rows = [(s, "train", f"loss/{a}", 0.7 - 0.01 * s, 0.0) for s in range(3) for a in attrs]
    rows += [(2, "val", f"{a}/accuracy", 0.5 + k / 100, 0.0) for k, a in enumerate(attrs)]
    store.log_metrics(run_id, rows)
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    table = next(d.value for d in at.dataframe if "kind" in d.value.columns)
    assert len(table) == 40 and set(table["kind"]) == {"binary"}
    assert table.iloc[7]["validation"] == "accuracy 0.570" and table.iloc[7]["training loss"] == 0.68
    task_charts = [c for c in charts(at) if c.key.startswith(f"live_task_{run_id}_")]
    assert len(task_charts) == 4
    at.multiselect(key=f"live_drawn_{run_id}").set_value(["attr_39"]).run()
    no_exceptions(at)
    assert [c.key for c in charts(at) if c.key.startswith(f"live_task_{run_id}_")] == [f"live_task_{run_id}_attr_39"]
