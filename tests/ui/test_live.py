"""The Live training page, driven with Streamlit's AppTest."""
from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from tests.conftest import tiny_config
from tests.ui.conftest import UI_TASKS, no_exceptions, page


def charts(at) -> list:
    return at.get("plotly_chart")


def test_a_finished_run_shows_its_status_curves_and_final_metrics(ui_runs):
    at = page("live", ui_runs["run_id"])
    at.run()
    no_exceptions(at)
    assert any("tiny-ui" in m.value and "finished" in m.value for m in at.markdown)
    # total loss, task weights and one panel per task
    assert len(charts(at)) == 2 + len(UI_TASKS)
    assert not at.button  # nothing to pause or stop
    final = at.dataframe[0].value
    assert set(final["task"]) == set(UI_TASKS) and (final["metric"] == "abs_rel").any()
    # the smoothing slider and the log toggle redraw without errors
    at.slider(key="live_smoothing").set_value(0.9).run()
    at.toggle(key="live_log_y").set_value(True).run()
    no_exceptions(at)
    assert len(charts(at)) == 2 + len(UI_TASKS)


def test_a_run_trained_by_another_process_shows_but_cannot_be_steered(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store import RunStore

    store = RunStore(tmp_path)
    cfg = tiny_config(name="from-cli").to_dict()
    run_id = store.create_run(cfg, "from-cli", "cli", 100, status="running")
    store.update_progress(run_id, 40, {"pid": os.getpid(),  # alive, but not this manager's
                                        "images_per_s": 321.0, "eta_s": 75.0})
    store.log_metrics(run_id, [(s, "train", "loss/classification", 2.0 - s / 50, 0.0) for s in range(1, 41)])
    store.add_event(run_id, 20, "weights", {"old": {"classification": 1.0}, "new": {"classification": 2.0}})
    at = page("live", run_id)
    at.run()
    no_exceptions(at)
    assert any("another process" in i.value for i in at.info)
    assert not at.button
    bar = at.get("progress")[0].proto
    assert bar.value == 40 and "ETA 1m 15s" in bar.text and "321 images/s" in bar.text
    figs = {c.key: json.loads(c.proto.spec) for c in charts(at)}
    fig = figs[f"live_task_{run_id}_classification"]
    assert [tr.get("name") for tr in fig["data"]][:2] == ["train (raw)", "train"]
    # the weight change at step 20 is marked on the curve
    assert [sh["x0"] for sh in fig["layout"]["shapes"]] == [20]
    assert "1→2" in fig["layout"]["annotations"][0]["text"]


def test_a_failed_run_shows_the_reason_and_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store import RunStore

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
    from mtl_core.runs import get_manager

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
