"""The dashboard pointed at a PostgreSQL run store (``MTL_RUNS_DB``) shows a study that a Ray cluster
trains, live: a study started by a manager on the cluster's head (the tests' own PostgreSQL server,
``ray.cluster_utils.Cluster`` with two worker nodes) appears on the Studies page with its curves
growing, and a run of it on the Live page steps on; Stop on the page stops the runs on the workers."""
from __future__ import annotations

import re

import pytest

from mtl_core.runs.manager import RunManager
from mtl_core.store.status import RunStatus
from mtl_core.studies.runner import StudyRunner
from mtl_core.studies.spec import StudySpec
from mtl_core.studies.store import StudyStore
from tests.e2e.test_browser import SLOW, _charts_grow, _progress, _settle, _shot, serve, shot_on_failure

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow

SPEC = {"name": "ray study", "seeds": 1, "baselines": False, "factors": {"weighting.method": ["ew", "uw"]},
        "base": {"tasks": ["classification", "segmentation"], "device": "cpu", "eval_every": 25,
                 "checkpoint_every": 50, "data": {"image_size": 32, "train_size": 64, "val_size": 16, "test_size": 16},
                 "optim": {"batch_size": 8, "steps": 100000, "warmup_steps": 0}}}


@pytest.fixture
def ray_study(postgres_url, tmp_path):
    """A two-run study training on a local two-worker Ray cluster, its store the PostgreSQL server."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    manager = RunManager(tmp_path / "runs", executor="ray", address=cluster.address)
    try:
        runner = StudyRunner(manager)
        study = runner.start(StudySpec.from_dict(SPEC))
        yield manager, study
    finally:
        manager.shutdown(timeout=60)
        ray.shutdown()
        cluster.shutdown()


def test_the_dashboard_on_postgresql_shows_a_ray_study_live_and_stops_it(browser, ray_study, tmp_path):
    from playwright.sync_api import expect

    manager, study = ray_study
    store = manager.store
    expect.set_options(timeout=SLOW)
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(SLOW)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    with serve(tmp_path) as url, shot_on_failure(page, "cluster_failure"):  # the fixture's MTL_RUNS_DB, runs dir
        page.goto(f"{url}/studies")
        expect(page.get_by_role("heading", name="Studies", exact=True)).to_be_visible(timeout=SLOW)
        expect(page.get_by_text("ray study").first).to_be_visible()
        _charts_grow(page, "the Ray study's curves", 60)
        _shot(page, "cluster_1_studies")
        run_id = StudyStore(store).plan(study)[0]["run_id"]
        node = store.events(run_id, "attempt")[0]["payload"]["node"]
        assert node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # trained by a Ray worker
        page.goto(f"{url}/live?run={run_id}")
        expect(page.get_by_role("heading", name="Live training", exact=True)).to_be_visible(timeout=SLOW)
        expect(page.locator('[data-testid="stProgress"]').first).to_be_visible()
        expect(page.get_by_text(re.compile(rf"Ray node {node[:8]}"))).to_be_visible()  # where it trains
        first, _ = _progress(page)
        page.wait_for_timeout(4000)
        assert _progress(page)[0] > first, "the Live page's step did not move"
        _shot(page, "cluster_2_live")
        page.goto(f"{url}/studies")
        expect(page.get_by_text("ray study").first).to_be_visible(timeout=SLOW)
        _settle(page)
        page.get_by_role("button", name=re.compile("Stop")).first.click()
        expect(page.get_by_text("stopped").first).to_be_visible(timeout=SLOW)
        for row in StudyStore(store).plan(study):
            assert manager.wait(row["run_id"], timeout=60) == RunStatus.STOPPED
        _shot(page, "cluster_3_stopped")
        assert not errors, f"JavaScript errors in the page: {errors}"
