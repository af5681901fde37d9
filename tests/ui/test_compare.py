"""The Compare page on hand-made runs whose Δm is known."""
from __future__ import annotations

import dataclasses
import io

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from tests.conftest import tiny_config
from tests.ui.conftest import no_exceptions, page

TASKS = ("classification", "depth")


def final_table(at) -> pd.DataFrame:
    """The final-metrics table (the second dataframe; the first is the table of runs)."""
    return at.dataframe[1].value


@pytest.fixture
def three_runs(tmp_path, monkeypatch):
    """A baseline (accuracy 0.80, abs_rel 0.20), a run better on both by 10% and one that trades
    +10% accuracy for a 10% worse abs_rel; finished, with test metrics."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    ids = {}
    for name, acc, abs_rel in (("baseline", 0.80, 0.20), ("better", 0.88, 0.18), ("trade", 0.88, 0.22)):
        cfg = tiny_config(name=name, tasks=TASKS).to_dict()
        rid = store.create_run(cfg, name, "cli", 10)
        store.set_status(rid, "running")
        rows = [(s, "train", f"loss/{t}", 1.0 / s, 0.0) for s in range(1, 11) for t in TASKS]
        rows += [(10, "val", "classification/accuracy", acc - 0.1, 0.0), (10, "val", "depth/abs_rel", abs_rel + 0.1, 0.0),
                 (10, "test", "classification/accuracy", acc, 0.0), (10, "test", "depth/abs_rel", abs_rel, 0.0)]
        store.log_metrics(rid, rows)
        store.update_progress(rid, 10)
        store.set_status(rid, "finished")
        ids[name] = rid
    return store, ids


def test_delta_m_against_the_chosen_baseline_and_the_csv(three_runs, monkeypatch):
    store, ids = three_runs
    csvs: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):
        if mimetype == "text/csv":
            csvs.append(data if isinstance(data, bytes) else data.encode())
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = page("compare")
    at.run()
    no_exceptions(at)
    at.selectbox(key="compare_baseline").set_value(ids["baseline"]).run()
    no_exceptions(at)
    final = final_table(at).set_index("id")
    dm = final["Δm vs baseline (%)"]
    assert dm[ids["baseline"]] == pytest.approx(0.0)
    assert dm[ids["better"]] == pytest.approx(10.0)
    assert dm[ids["trade"]] == pytest.approx(0.0, abs=1e-9)
    assert (final["split"] == "test").all()  # test metrics win over the last validation
    # the CSV download holds the same table
    assert "CSV" in at.get("download_button")[0].proto.label
    from_csv = pd.read_csv(io.BytesIO(csvs[-1])).set_index("id")
    assert from_csv.loc[ids["better"], "Δm vs baseline (%)"] == pytest.approx(10.0)
    assert from_csv.loc[ids["trade"], "classification · accuracy↑"] == pytest.approx(0.88)
    # another baseline: Δm moves with it
    at.selectbox(key="compare_baseline").set_value(ids["better"]).run()
    dm = final_table(at).set_index("id")["Δm vs baseline (%)"]
    assert dm[ids["baseline"]] == pytest.approx((-0.08 / 0.88 * 100 - 0.02 / 0.18 * 100) / 2)
    # curves per task and the trade-off scatter with its Pareto front
    keys = [c.key for c in at.get("plotly_chart")]
    assert {"compare_loss_classification", "compare_val_depth", "compare_pareto"} <= set(keys)


def test_the_pareto_scatter_puts_only_undominated_runs_on_the_front(three_runs):
    import json

    store, ids = three_runs
    at = page("compare")
    at.run()
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "compare_pareto").proto.spec)
    front = next(tr for tr in spec["data"] if tr["name"] == "on the front")
    assert [t.split(" (")[0] for t in front["text"]] == ["better"]  # it beats both others on both tasks


def test_deleting_asks_first_then_removes_the_run(three_runs):
    store, ids = three_runs
    at = page("compare")
    at.run()
    at.multiselect(key="compare_delete_pick").set_value([ids["trade"]]).run()
    at.button(key="compare_delete").click().run()
    assert store.get_run(ids["trade"]) is not None  # only asked so far
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="compare_delete_yes").click().run()
    no_exceptions(at)
    assert store.get_run(ids["trade"]) is None
    assert store.get_run(ids["baseline"]) is not None
    assert ids["trade"] not in final_table(at)["id"].tolist()


def finished_run(store, name: str, tasks, test: dict[str, float], status: str = "finished", **config) -> str:
    """A run with ``test`` metrics (``{"<task>/<metric>": value}``) and the given ``status``."""
    cfg = dataclasses.replace(tiny_config(name=name, tasks=tuple(tasks)), **config).to_dict()
    rid = store.create_run(cfg, name, "cli", 10)
    store.set_status(rid, "running")
    store.log_metrics(rid, [(10, "test", k, v, 0.0) for k, v in test.items()]
                      + [(s, "train", f"loss/{t}", 1.0 / s, 0.0) for s in range(1, 11) for t in tasks])
    store.update_progress(rid, 10)
    store.set_status(rid, status)
    return rid


def test_delta_m_against_each_tasks_own_single_task_baseline(tmp_path, monkeypatch):
    """Accuracy 0.84 against 0.80 alone is +5%; abs_rel 0.22 against 0.20 alone is 10% worse:
    Δm = (5 - 10) / 2 = -2.5%. A failed baseline and another run's baseline are not used."""
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    other = finished_run(store, "other", TASKS, {"classification/accuracy": 0.5, "depth/abs_rel": 0.5})
    mtl = finished_run(store, "mtl", TASKS, {"classification/accuracy": 0.84, "depth/abs_rel": 0.22})
    finished_run(store, "cls alone", ["classification"], {"classification/accuracy": 0.80}, baseline_of=mtl)
    finished_run(store, "depth alone", ["depth"], {"depth/abs_rel": 0.20}, baseline_of=mtl)
    finished_run(store, "cls alone, failed later", ["classification"], {"classification/accuracy": 0.40},
                 status="failed", baseline_of=mtl)
    finished_run(store, "depth alone for other", ["depth"], {"depth/abs_rel": 0.10}, baseline_of=other)
    at = page("compare")
    at.run()
    no_exceptions(at)
    final = final_table(at).set_index("id")
    assert final.loc[mtl, "Δm vs single-task (%)"] == pytest.approx(-2.5)
    assert pd.isna(final.loc[other, "Δm vs single-task (%)"])  # only one of its tasks has a baseline
    assert "Δm vs baseline (%)" in final.columns  # the chosen-baseline option stays
    # both multi-task runs can be picked for baselines; mtl's exist already, so its button is off
    at.selectbox(key="compare_baselines_for").set_value(mtl).run()
    button = at.button(key="compare_baselines")
    assert button.disabled and "exist already" in button.proto.help
    at.selectbox(key="compare_baselines_for").set_value(other).run()
    assert not at.button(key="compare_baselines").disabled  # classification has no baseline yet


def test_the_baselines_button_starts_one_single_task_run_per_task(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path))
    from mtl_core.runs.manager import get_manager

    manager = get_manager(tmp_path)  # the page's manager: same runs directory
    mtl = finished_run(manager.store, "mtl", TASKS, {"classification/accuracy": 0.84, "depth/abs_rel": 0.22})
    at = page("compare")
    at.run()
    no_exceptions(at)
    assert "Δm vs single-task (%)" not in final_table(at).columns  # nothing to compare against yet
    at.button(key="compare_baselines").click().run()
    no_exceptions(at)
    started = [r for r in manager.store.list_runs() if r["config"].get("baseline_of") == mtl]
    try:
        assert sorted(tuple(r["config"]["tasks"]) for r in started) == [("classification",), ("depth",)]
        assert {r["source"] for r in started} == {"baseline"}
        assert any("Started 2 single-task baseline runs" in s.value for s in at.success)
        at.run()
        button = at.button(key="compare_baselines")
        assert button.disabled and "training" in button.proto.help  # a second click cannot start them twice
    finally:
        for r in started:
            if manager.is_active(r["id"]):
                manager.stop(r["id"])
        for r in started:
            manager.wait(r["id"], timeout=60)


def ensemble(at):
    return next(e for e in at.expander if e.label == "Ensemble of the selected runs")


def test_an_ensemble_of_one_model_twice_scores_as_that_model(twin_runs):
    """Two runs sharing one checkpoint, weighted 1 and 3: the fused outputs are the model's own,
    so the ensemble's row equals each member's; the weights show as shares."""
    a, b = twin_runs["ids"]
    at = page("compare")
    at.run()
    no_exceptions(at)
    assert not ensemble(at).dataframe  # computed on demand only
    at.number_input(key=f"compare_ens_w_{b}").set_value(3.0)
    at.number_input(key="compare_ens_limit").set_value(16)
    at.button(key="compare_ens_go").click().run()
    no_exceptions(at)
    table = ensemble(at).dataframe[0].value
    assert len(table) == 3 and table["model"].iloc[-1].startswith("ensemble of 2")
    weight = dict(zip(table["model"], table["weight"], strict=True))
    assert weight[f"twin-a ({a[-6:]})"] == pytest.approx(0.25) and weight[f"twin-b ({b[-6:]})"] == pytest.approx(0.75)
    metrics = [c for c in table.columns if "·" in c]
    assert {"classification · accuracy↑", "depth · abs_rel↓", "detection · map50↑"} <= set(metrics)
    for c in metrics:
        assert table[c].iloc[2] == pytest.approx(table[c].iloc[0], abs=1e-6), c
        assert table[c].iloc[1] == pytest.approx(table[c].iloc[0], abs=1e-6), c
    # a changed setting hides the stale table until evaluated again
    at.radio(key="compare_ens_class").set_value("vote").run()
    assert not ensemble(at).dataframe
    assert any("evaluate again" in c.value for c in ensemble(at).caption)
