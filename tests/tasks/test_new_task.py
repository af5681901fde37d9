"""The task protocol's promise: a new task is one file, and a task that only learns is a short one.
``plugin_crowded.py`` (a task learnt from the ``count`` label) writes the learning half alone and is
registered through ``MTL_PLUGINS`` and nothing else; it is listed by the CLI, offered by Setup,
trains, evaluates, and is drawn, summarised and inspected on Predict and Inspect by the display of
its kind (``classification``), with no drawing of its own."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = str(Path(__file__).with_name("plugin_crowded.py"))


@pytest.fixture(scope="module")
def crowded():
    """The plugin loaded for this module's tests, and the registry put back afterwards."""
    from mtl_core.registry import PLUGINS_ENV, load_plugins, loaded_plugins
    from mtl_core.tasks import TASKS

    previous = os.environ.get(PLUGINS_ENV)
    os.environ[PLUGINS_ENV] = PLUGIN
    try:
        load_plugins()
        assert "crowded" in TASKS
        yield TASKS.get("crowded")
    finally:
        TASKS.unregister("crowded")
        loaded_plugins.discard(PLUGIN)
        if previous is None:
            os.environ.pop(PLUGINS_ENV, None)
        else:
            os.environ[PLUGINS_ENV] = previous


@pytest.fixture(scope="module")
def crowded_run(crowded, tmp_path_factory) -> dict:
    from mtl_core.runs.manager import RunManager

    d = tmp_path_factory.mktemp("crowded_runs")
    manager = RunManager(d, max_concurrent=1)
    run_id = manager.start(tiny_config(name="crowded", tasks=("classification", "crowded")))
    assert manager.wait(run_id, timeout=120) == "finished", manager.store.get_run(run_id)["error"]
    return {"dir": d, "run_id": run_id, "store": manager.store}


def test_the_cli_lists_a_task_registered_by_a_plugin_file(tmp_path):
    env = {**os.environ, "MTL_PLUGINS": PLUGIN}
    p = subprocess.run([sys.executable, "-m", "mtl_core", "list", "--runs-dir", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    tasks_line = next(line for line in p.stdout.splitlines() if line.startswith("tasks (built-in names):"))
    assert "crowded" in tasks_line and "classification" in tasks_line


def test_a_broken_plugin_is_named_in_a_clear_error(tmp_path):
    bad = tmp_path / "broken_task.py"
    bad.write_text("raise RuntimeError('no such head')\n")
    env = {**os.environ, "MTL_PLUGINS": str(bad)}
    p = subprocess.run([sys.executable, "-m", "mtl_core", "list", "--runs-dir", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "MTL_PLUGINS" in p.stderr and "broken_task.py" in p.stderr and "no such head" in p.stderr


def test_setup_offers_the_new_task_with_its_description(crowded, runs_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/setup.py").run()
    assert not at.exception
    picker = at.multiselect(key="cfg.tasks")
    assert "Crowded scene" in picker.options
    picker.set_value(["classification", "crowded"]).run()
    assert not at.exception
    assert any("Crowded scene" in c.value and "3 or more objects" in c.value for c in at.caption)


def test_the_new_task_trains_and_evaluates(crowded_run):
    store, run_id = crowded_run["store"], crowded_run["run_id"]
    test_keys = {r[2] for r in store.metrics(run_id, split="test")}
    assert {"crowded/accuracy", "loss/crowded", "classification/accuracy"} <= test_keys
    losses = [r[3] for r in store.metrics(run_id, split="train", key_prefix="loss/crowded")]
    assert losses and all(np.isfinite(losses))


def test_predict_draws_and_summarises_the_new_task(crowded_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MTL_RUNS_DIR", str(crowded_run["dir"]))
    at = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=60)
    at.session_state["run_id"] = crowded_run["run_id"]
    at.run()
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(buf, format="PNG")
    at.file_uploader(key="predict_upload").set_value(("grey.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error
    summary = next(m.value for m in at.markdown if m.value.startswith("Classification:"))
    assert "Crowded scene: " in summary and ("crowded (" in summary or "sparse (" in summary)
    at.radio(key="predict_source").set_value("dataset").run()
    assert not at.exception
    assert [im.captions[0] for im in at.image][:2] == ["Prediction", "Ground truth"]


def test_the_new_task_writes_only_the_learning_half_and_its_kind_shows_it(crowded):
    from mtl_core.config import DataConfig
    from mtl_core.data import build_dataset
    from mtl_core.tasks.base import DISPLAYS, Display, Task
    from tests.tasks.test_task_protocol import exercise

    show_half = {n for n in vars(Display) if not n.startswith("_")} - set(vars(Task))  # not name, title
    assert not show_half & set(vars(crowded)), "the plugin draws, words or inspects something itself"
    assert crowded.display_type() is DISPLAYS.get("classification")
    scenes = build_dataset(DataConfig(image_size=32, train_size=8, val_size=8, test_size=8), "val", 0)
    exercise(crowded(scenes.info), scenes)


def _predictor(crowded_run):
    from mtl_core.inference.predictor import Predictor

    ck = crowded_run["store"].chosen_checkpoint(crowded_run["run_id"])  # what Predict and Inspect open
    return Predictor(ck["path"]), ck["path"]


def test_predict_draws_the_new_task_as_its_kind_draws_a_class(crowded_run):
    from mtl_core.views.render import render

    predictor, _ = _predictor(crowded_run)
    image = torch.full((3, 320, 320), 90, dtype=torch.uint8)  # large: labels drawn on the image
    preds, _ = predictor.predict(image)
    said = preds["crowded"]
    word = ("sparse", "crowded")[said["label"]]
    alone = render(predictor, image, preds, show={"classification": False})
    assert alone.summary == [f"Crowded scene: {word} ({said['score']:.0%})"]
    inked = (alone.overlay != 90).any(-1)  # (H, W)
    ys, xs = inked.nonzero()
    assert len(ys) and ys.max() < 40 and xs.max() < 200  # a chip at the top-left, nothing else
    # beside classification's answer, in the same corner: stacked below it, neither hidden
    first = render(predictor, image, preds, show={"crowded": False}).overlay
    top = int((first != 90).any(-1).any(-1).nonzero()[0].max())
    both = render(predictor, image, preds).overlay
    assert np.array_equal(both[:top], first[:top]) and (both[top + 2:] != 90).any()


def test_inspect_tables_the_new_tasks_errors_in_its_kinds_columns(crowded_run, monkeypatch):
    from mtl_core.inference.samples import run_dataset
    from mtl_core.inspection.outputs import split_outputs
    from mtl_core.inspection.table import error_table
    from mtl_core.views.inspection import sample_view
    from tests.ui.conftest import no_exceptions, page

    predictor, checkpoint = _predictor(crowded_run)
    out = split_outputs(checkpoint, "val", predictor=predictor)
    table = error_table(out)
    dataset = run_dataset(out.run_config, "val")
    expected = ["crowded" if int(dataset[i][1]["count"]) >= 3 else "sparse" for i in out.indices]
    assert table["crowded/truth"] == expected  # the label it derives from the count, named by its classes
    assert set(table["crowded/predicted"]) <= {"sparse", "crowded"}
    wrong = [float(p != t) for p, t in zip(table["crowded/predicted"], expected, strict=True)]
    assert table["crowded/failed"] == wrong
    line = next(x for x in sample_view(out, 0, {t: True for t in out.tasks}).lines if "Crowded scene" in x)
    assert line.startswith("✗" if wrong[0] else "✓") and expected[0] in line + table["crowded/predicted"][0]

    monkeypatch.setenv("MTL_RUNS_DIR", str(crowded_run["dir"]))
    at = page("inspect", crowded_run["run_id"], timeout=120)
    at.run()
    no_exceptions(at)
    at.checkbox(key="inspect_f_crowded_failed").check().run()  # the error browser's filter: "only wrong"
    no_exceptions(at)
    shown = next(m.value for m in at.markdown if m.value.startswith("**") and " of " in m.value and "samples" in m.value)
    assert shown.startswith(f"**{int(sum(wrong))}** of {len(out)} samples")
