"""A run on a label table with a task of every kind goes through what comes after training as the
scenes' runs do: feature importance names every column's task, channel pruning keeps every task's
head and reports every task's metric, inspection gives every task its errors."""
from __future__ import annotations

import pytest

from mtl_core.config import ExperimentConfig
from mtl_core.deploy.importance import checkpoint_importance
from mtl_core.deploy.structured import prune_checkpoint
from mtl_core.inspection.outputs import split_outputs
from mtl_core.inspection.table import error_table
from mtl_core.store.store import RunStore
from mtl_core.training.loop import Trainer
from mtl_core.training.validation import check
from tests.label_tables import every_kind_table

TASKS = ["animal", "smiling", "age", "tags", "mask", "depth", "surface", "boxes", "people"]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("table_run")
    table = every_kind_table(root, n=16)
    cfg = check(ExperimentConfig.from_dict({
        "tasks": TASKS, "data": {"dataset": "manifest", "root": str(table), "image_size": [32, 48]},
        "model": {"width": 8}, "optim": {"batch_size": 4, "steps": 3, "warmup_steps": 0},
        "eval_every": 3, "first_eval": 0, "checkpoint_every": 0, "gradstats_every": 0, "device": "cpu"}))
    store = RunStore(root / "runs")
    run_id = store.create_run(cfg.to_dict(), "every kind", "test", 3)
    Trainer(cfg, store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished"
    return store.latest_checkpoint(run_id, "final")["path"]


def test_feature_importance_scores_every_columns_task(table_run):
    imp = checkpoint_importance(table_run, batches=1, batch_size=4)
    assert imp.tasks == TASKS
    values = next(iter(imp.layers.values()))
    assert values.shape[0] == len(TASKS) and (values.sum(axis=1) > 0).all()


def test_channel_pruning_keeps_every_task_and_reports_its_metric(table_run, tmp_path):
    report = prune_checkpoint(table_run, amount=0.25, out_dir=tmp_path, int8=False, latency_runs=1)
    pruned = next(r for r in report["rows"] if r["model"] == "channel-pruned")
    original = next(r for r in report["rows"] if r["model"] == "original")
    assert pruned["parameters"] < original["parameters"]
    for key in ("animal/accuracy", "smiling/accuracy", "age/mae", "tags/map", "mask/miou", "depth/abs_rel",
                "surface/mean", "boxes/map50", "people/accuracy"):
        assert key in pruned, key


def test_inspection_gives_every_task_its_errors(table_run):
    table = error_table(split_outputs(table_run, "val"))
    for t in TASKS:
        assert f"{t}/failed" in table and len(table[f"{t}/failed"]) == len(table["sample"]), t
