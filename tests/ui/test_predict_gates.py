"""The Predict page shows a gated run's gate values per task (CGC: the shared expert and the task's
own, summing to 1) and a PAD-Net run's distillation gates; the helper gives them as plain floats."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest

from tests.ui.conftest import no_exceptions, page
from tests.ui.test_live import values
from tests.ui.test_predict import png_bytes

TASKS = ("classification", "segmentation")


def _run(tmp_path_factory, arch: str) -> dict:
    from mtl_core.runs.manager import get_manager
    from tests.conftest import tiny_config

    d = tmp_path_factory.mktemp(f"{arch}_runs")
    manager = get_manager(d)
    base = tiny_config()
    run_id = manager.start(tiny_config(name=f"tiny-{arch}", tasks=TASKS,
                                       model=dataclasses.replace(base.model, architecture=arch, width=8),
                                       optim=dataclasses.replace(base.optim, steps=3)))
    assert manager.wait(run_id, timeout=120) == "finished", manager.store.get_run(run_id)["error"]
    return {"dir": d, "run_id": run_id, "manager": manager}


@pytest.fixture(scope="module")
def cgc_run(tmp_path_factory) -> dict:
    return _run(tmp_path_factory, "cgc")


@pytest.fixture(scope="module")
def pad_net_run(tmp_path_factory) -> dict:
    return _run(tmp_path_factory, "pad_net")


def _helper_values(run: dict, data: bytes) -> dict:
    from mtl_core.inference.images import decode_image
    from mtl_core.inference.predictor import Predictor
    from mtl_core.views.gates import gate_values

    ck = run["manager"].store.latest_checkpoint(run["run_id"])
    return gate_values(Predictor(ck["path"]), decode_image(data, "cat.png"))


def gate_charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart") if (c.key or "").startswith("predict_gates_")]


def bars(chart: dict) -> dict[str, dict[str, float]]:
    """``{task title: {expert: height}}`` from a gate chart's JSON."""
    out = {}
    for trace in chart["data"]:
        tasks, experts = (values(level) for level in trace["x"])
        assert len(set(tasks)) == 1
        out[tasks[0]] = dict(zip(experts, values(trace["y"]), strict=True))
    return out


def test_a_cgc_run_shows_each_tasks_weight_on_the_shared_expert_and_its_own(cgc_run, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(cgc_run["dir"]))
    at = page("predict", cgc_run["run_id"])
    at.run()
    no_exceptions(at)
    assert at.toggle(key="predict_gates").value is True
    at.file_uploader(key="predict_upload").set_value(("cat.png", png_bytes(), "image/png")).run()
    no_exceptions(at)
    charts = gate_charts(at)
    assert len(charts) == 1 and charts[0]["layout"]["title"]["text"].startswith("Gates")
    shown = bars(charts[0])
    assert shown.keys() == {"Classification", "Segmentation"}
    assert set(shown["Classification"]) == {"shared", "classification"}  # its gate sees no other task's expert
    assert set(shown["Segmentation"]) == {"shared", "segmentation"}
    for weights in shown.values():
        assert math.isclose(sum(weights.values()), 1.0, abs_tol=1e-5) and all(0 < w < 1 for w in weights.values())
    expected = _helper_values(cgc_run, png_bytes())  # the model's own gates for this upload
    assert shown["Segmentation"] == pytest.approx(expected["segmentation"], abs=1e-6)
    at.toggle(key="predict_gates").set_value(False).run()
    no_exceptions(at)
    assert not gate_charts(at)


def test_the_helper_gives_the_models_own_gate_values_as_floats(cgc_run):
    import torch

    from mtl_core.inference.predictor import Predictor
    from mtl_core.views.gates import gate_values, has_distillation, has_gates

    ck = cgc_run["manager"].store.latest_checkpoint(cgc_run["run_id"])
    predictor = Predictor(ck["path"])
    image = torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got = gate_values(predictor, image)
    assert has_gates(predictor) and not has_distillation(predictor)
    assert all(type(w) is float for d in got.values() for w in d.values())
    x = torch.nn.functional.interpolate(image.float()[None] / 255, size=(32, 32), mode="bilinear", antialias=True,
                                        align_corners=False)
    direct = predictor.model.gate_values(x)
    assert got.keys() == direct.keys() and all(got[t] == pytest.approx(direct[t]) for t in direct)
    assert gate_values(object(), image) == {}  # a model without gates: nothing to show


def test_a_pad_net_run_shows_how_much_each_task_takes_from_the_other(pad_net_run, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(pad_net_run["dir"]))
    at = page("predict", pad_net_run["run_id"])
    at.run()
    at.file_uploader(key="predict_upload").set_value(("cat.png", png_bytes(seed=1), "image/png")).run()
    no_exceptions(at)
    charts = gate_charts(at)
    assert len(charts) == 1 and charts[0]["layout"]["title"]["text"].startswith("Distillation gates")
    shown = bars(charts[0])
    assert shown.keys() == {"Classification", "Segmentation"}
    assert set(shown["Classification"]) == {"from segmentation"} and set(shown["Segmentation"]) == {"from classification"}
    assert all(0 < w < 1 for d in shown.values() for w in d.values())


def test_a_channel_pruned_model_of_the_run_can_be_picked_on_predict(pad_net_run, monkeypatch):
    """Compress & export's channel-pruned model is offered on Predict beside the model as trained,
    and picking it predicts with the smaller network (the caption counts its parameters)."""
    from mtl_core.deploy.structured import prune_run
    from mtl_core.inference.predictor import Predictor

    store = pad_net_run["manager"].store
    report = prune_run(store, pad_net_run["run_id"], 0.5, 0, int8=False, eval_limit=8, latency_runs=1)
    small = Predictor(report["files"]["model"]).parameters
    monkeypatch.setenv("MTL_RUNS_DIR", str(pad_net_run["dir"]))
    at = page("predict", pad_net_run["run_id"])
    at.run()
    no_exceptions(at)
    box = at.selectbox(key="predict_variant")
    assert box.options[0].startswith("as trained") and box.options[1] == "channel-pruned 50%"
    assert not any("parameters" in c.value for c in at.caption)
    box.set_value("channel-pruned 50%").run()
    no_exceptions(at)
    assert any(f"{small:,} parameters" in c.value and "channel-pruned 50%" in c.value for c in at.caption)
    at.file_uploader(key="predict_upload").set_value(("cat.png", png_bytes(), "image/png")).run()
    no_exceptions(at)
    assert "Prediction" in [im.captions[0] for im in at.image]  # the pruned model's predictions are drawn
