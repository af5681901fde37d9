"""A runs directory written before tasks were instances of a kind (tests/fixtures/runs_schema_2026_12:
one 30-step run on the scenes, copied from where it was trained) still lists, reads, evaluates and
predicts: its config's task names are the built-in shorthands, its image size one number."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from mtl_core.cli import main
from mtl_core.config import ExperimentConfig
from mtl_core.inference.predictor import Predictor
from mtl_core.store.store import RunStore
from mtl_core.tasks import task_meta
from mtl_core.training.validation import check, validate

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs_schema_2026_12"
RUN = "20261207-084946-b30ee6"


def _copy(tmp_path: Path) -> Path:
    runs = tmp_path / "moved runs"
    shutil.copytree(FIXTURE, runs)
    return runs


def test_its_config_reads_as_the_built_in_tasks_unchanged(tmp_path):
    store = RunStore(_copy(tmp_path))
    (run,) = store.list_runs()
    assert run["id"] == RUN and run["status"] == "finished"
    cfg = ExperimentConfig.from_dict(run["config"])
    assert cfg.tasks == ("classification", "segmentation", "count") and cfg.task_specs == {}
    assert cfg.data.image_size == 48 and cfg.data.hw == (48, 48)
    assert validate(cfg) == [] and check(cfg) == cfg  # built-in names need no spec: nothing to resolve
    assert cfg.to_dict()["data"]["image_size"] == 48  # and it writes back as it was read
    meta = task_meta(cfg.tasks, run["config"].get("task_specs"))
    assert [meta[t]["primary"] for t in cfg.tasks] == ["accuracy", "miou", "accuracy"]


def test_a_moved_runs_directory_finds_its_checkpoints_and_predicts_a_photo(tmp_path, capsys):
    runs = _copy(tmp_path)
    ck = RunStore(runs).latest_checkpoint(RUN)
    assert ck is not None and Path(ck["path"]) == runs / RUN / "final.pt"  # the row says /tmp/legacy_runs/...
    pred = Predictor(ck["path"])
    photo = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    assert main(["predict", "--runs-dir", str(runs), RUN, str(tmp_path / "photo.png"), "--out",
                 str(tmp_path / "overlay.png")]) == 0
    out = capsys.readouterr().out
    assert "classification:" in out and "segmentation:" in out and "count:" in out
    assert Image.open(tmp_path / "overlay.png").size == (40, 30)
    assert set(pred.tasks) == {"classification", "segmentation", "count"}
    assert main(["evaluate", "--runs-dir", str(runs), RUN, "--split", "val"]) == 0
    assert "classification/accuracy" in capsys.readouterr().out
