"""A run that follows a protocol preset shows the published numbers beside its own, with their
citation, on its run page (Live), on Compare and in its study's table."""
from __future__ import annotations

from mtl_core.protocols.benchmarks import load_preset, published_delta_m
from mtl_core.store.store import RunStore
from tests.conftest import tiny_config
from tests.ui.conftest import no_exceptions, page

PRESET = "nyuv2_segnet_mtan"


def _finished_preset_run(tmp_path, monkeypatch, benchmark: str = PRESET) -> tuple[RunStore, str, dict]:
    """A finished run recorded as following ``benchmark``, whose best model scored ``ours`` on test."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    store = RunStore(tmp_path)
    cfg = tiny_config(name="segnet-ew", tasks=("segmentation", "depth")).to_dict()
    cfg["benchmark"] = benchmark
    rid = store.create_run(cfg, "segnet-ew", "cli", 6)
    ours = {"segmentation/miou": 0.40, "segmentation/pixel_acc": 0.65, "depth/abs_err": 0.60, "depth/abs_rel": 0.25}
    rows = [(3, "val", k, v, 0.0) for k, v in ours.items()]
    rows += [(6, "test", k, v * 0.9, 0.0) for k, v in ours.items()]  # the last model: worse
    rows += [(3, "test_best", k, v, 0.0) for k, v in ours.items()]
    store.log_metrics(rid, rows)
    store.update_progress(rid, 6)
    store.set_status(rid, "finished")
    return store, rid, ours


def test_the_run_page_shows_published_numbers_beside_ours_with_their_citation(tmp_path, monkeypatch):
    _, rid, ours = _finished_preset_run(tmp_path, monkeypatch)
    at = page("live", rid)
    at.run()
    no_exceptions(at)
    texts = [m.value for m in at.markdown]
    assert any("model: best on validation (step 3)" in t for t in texts)  # the best, not the last, and said so
    beside = next(df.value for df in at.dataframe if "ours" in df.value.columns)
    row = beside.set_index("metric").loc["segmentation/miou ↑"]
    assert row["ours"] == 0.40 and row["published · Single-task (CAGrad)"] == 0.3830
    preset = load_preset(PRESET)
    expected = published_delta_m(ours, preset)
    assert any(f"{expected:+.2f}%" in t for t in texts)
    captions = " ".join(c.value for c in at.caption)
    assert "nash-mtl" in captions and "CAGrad (Liu et al., NeurIPS 2021)" in captions
    assert "Not published here" in captions  # what the preset lacks is said, not hidden


def _final_table(at):
    """Compare's table of final metrics (the one with a Δm column; AppTest shows no key for it)."""
    return next(df.value for df in at.dataframe if "Δm vs baseline (%)" in df.value.columns)


def test_compare_lists_the_published_rows_and_delta_m_against_them(tmp_path, monkeypatch):
    _, rid, ours = _finished_preset_run(tmp_path, monkeypatch)
    at = page("compare")
    at.run()
    no_exceptions(at)
    final = _final_table(at)
    assert "published · Single-task (CAGrad)" in set(final["run"])
    mine = final[final["id"] == rid].iloc[0]
    assert mine["model"] == "best on validation (step 3)"
    assert abs(mine["Δm vs published single-task (%)"] - published_delta_m(ours, load_preset(PRESET))) < 1e-9
    # asked for the last model instead, the table shows the last model's numbers
    at.selectbox(key="compare_use").set_value("last").run()
    mine = _final_table(at).set_index("id").loc[rid]
    assert mine["model"] == "last step (6)" and abs(mine["segmentation · miou↑"] - 0.36) < 1e-9


def test_a_study_of_a_preset_shows_the_published_rows_beside_its_levels(tmp_path, monkeypatch):
    from mtl_core.runs.manager import RunManager
    from mtl_core.studies.runner import StudyRunner
    from mtl_core.studies.spec import StudySpec
    from tests.studies.test_runner import BASE

    manager = RunManager(tmp_path, max_concurrent=1)
    runner = StudyRunner(manager)
    sid = runner.start(StudySpec.from_dict({"name": "on a preset", "base": {**BASE, "benchmark": "cityscapes"},
                                            "seeds": 1, "factors": {"weighting.method": ["ew"]}}))
    assert runner.wait(sid, timeout=120)["finished"] == 1
    manager.shutdown()
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    at = page("studies")
    at.query_params["study"] = sid
    at.run()
    no_exceptions(at)
    assert any("Beside the published numbers" in m.value for m in at.markdown)
    table = next(df.value for df in at.dataframe if "Δm vs published single-task (%)" in df.value.columns)
    assert "published · Single-task (CAGrad)" in set(table[""])
    assert table.set_index("").loc["published · Single-task (CAGrad)", "segmentation/miou"] == 0.7401
    assert any("best on validation" in c.value for c in at.caption)  # which model of each run the table scores
