"""Forty binary tasks, as CelebA's attributes are in the multi-task literature: a label table of 40
yes/no columns trains as 40 tasks that a study weights one by one, against 40 single-task
baselines, with per-task weights, label fractions and loss scales, and a Δm over all of them."""
from __future__ import annotations

import pytest

from mtl_core.runs.manager import RunManager
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.summary import summarize
from tests.label_tables import split_of, write_table

N = 40
ATTRS = [f"attr_{k:02d}" for k in range(N)]


@pytest.fixture
def faces(tmp_path):
    rows = [{"image": f"img/{i}.png", "split": split_of(i), **{a: str((i + k) % 2) for k, a in enumerate(ATTRS)}}
            for i in range(16)]
    return write_table(tmp_path, rows)


def test_forty_binary_tasks_train_in_a_study_with_baselines_and_per_task_settings(tmp_path, faces):
    base = {"tasks": ATTRS, "data": {"dataset": "manifest", "root": str(faces), "image_size": 32,
                                     "label_fraction": {"attr_03": 0.5}, "loss_scale": {"attr_07": 10.0}},
            "model": {"width": 4}, "optim": {"batch_size": 4, "steps": 2, "warmup_steps": 0},
            "eval_every": 2, "first_eval": 0, "checkpoint_every": 0, "gradstats_every": 1, "device": "cpu"}
    spec = StudySpec.from_dict({"name": "forty attributes", "base": base, "seeds": 1, "baselines": True,
                                "factors": {"weighting.weights.attr_39": [0.5, 2.0]}})
    manager = RunManager(tmp_path / "runs", max_concurrent=1)
    try:
        runner = StudyRunner(manager)
        sid = runner.start(spec)
        assert runner.wait(sid, timeout=600) == {"finished": 2 + N, "total": 2 + N}
        s = summarize(manager.store, sid)
    finally:
        manager.shutdown()
    assert set(s.baselines) == set(ATTRS)
    for level in s.levels:
        assert set(level.metrics) == set(ATTRS) and level.delta_m is not None
    trial = next(r for r in manager.store.list_runs() if r["tags"]["role"] == "trial")
    specs = trial["config"]["task_specs"]
    assert len(specs) == N and all(specs[a]["kind"] == "binary" for a in ATTRS)  # recorded resolved
    assert {key for _, _, key, _, _ in manager.store.metrics(trial["id"], "val")} >= {f"{a}/accuracy" for a in ATTRS}
    keys = {key for _, _, key, _, _ in manager.store.metrics(trial["id"])}
    assert any("conflict" in k or "cos" in k for k in keys), f"no gradient conflict among {sorted(keys)[:20]}"
