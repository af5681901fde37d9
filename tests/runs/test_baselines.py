"""RunManager.start_baselines: one single-task run per task of a multi-task run, or only the
tasks asked for (a retry of the baselines that failed)."""
from __future__ import annotations

import pytest

from mtl_core.errors import ConfigError
from tests.conftest import tiny_config


@pytest.mark.usefixtures("store_backend")
def test_baselines_for_some_tasks_start_only_those(tmp_path):
    from mtl_core.runs.manager import get_manager

    manager = get_manager(tmp_path)
    cfg = tiny_config(name="mtl", tasks=("classification", "depth", "segmentation")).to_dict()
    mtl = manager.store.create_run(cfg, "mtl", "cli", 6, status="finished")
    with pytest.raises(ConfigError, match="no task 'detection'.*classification, depth, segmentation"):
        manager.start_baselines(mtl, tasks=["depth", "detection"])
    assert len(manager.store.list_runs()) == 1  # nothing started
    started = manager.start_baselines(mtl, tasks=["depth"])
    try:
        assert list(started) == ["depth"]
        run = manager.store.get_run(started["depth"])
        assert run["config"]["tasks"] == ["depth"] and run["config"]["baseline_of"] == mtl
    finally:
        for rid in started.values():
            manager.wait(rid, timeout=120)
